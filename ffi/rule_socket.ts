// RuleSocket: batched `ip rule add` / `ip rule del` with one ack per rule, and `ip rule show`.
import type { Family } from "../net/address.ts";
import {
  EAGAIN,
  EINTR,
  EINVAL,
  ENOBUFS,
  EPROTO,
  ETIMEDOUT,
  NETLINK_CAP_ACK,
  NETLINK_EXT_ACK,
  NLM_F_ACK,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REQUEST,
  NLMSG_ERROR,
  RTM_DELRULE,
  RTM_NEWRULE,
  SO_RCVBUF,
  SO_RCVBUFFORCE,
} from "./constants.ts";
import { InvalidRuleError, NetlinkError, type NetlinkOp } from "./errors.ts";
import { NetlinkSocket } from "./netlink_socket.ts";
import type { KernelRule, RuleSpec } from "./rule.ts";
import { DumpBuffer, RuleListImage } from "./rule_dump.ts";
import {
  decodeAck,
  encodeDumpRequest,
  type MessageHeader,
  readMessages,
  ruleMessageLength,
  writeRuleMessage,
} from "./rule_codec.ts";

/** Options of `RuleSocket.open`. */
export interface RuleSocketOptions {
  /** libmnl path; default $IPRULE_LIBMNL_PATH, else /usr/lib/<arch>-linux-gnu/libmnl.so.0. */
  libraryPath?: string;
  /** Most rule messages per sendto (default 1024); 1 sends one request per rule. */
  batchSize?: number;
}

/** Options of `RuleSocket.addRules`. */
export interface AddRulesOptions {
  /** Fail an existing rule with EEXIST (NLM_F_EXCL, default true); false adds duplicates silently. */
  exclusive?: boolean;
}

/** Options of `RuleSocket.listRules`. */
export interface ListRulesOptions {
  /** Only this family; default both. */
  family?: Family;
}

/** Both families' rules as one dump found them, with the image to compare a later dump with. */
export interface RuleList {
  /** Every rule, in kernel order. */
  rules: KernelRule[];
  /** The dump's bytes, for `listRulesIfChanged`. */
  image: RuleListImage;
}

/** The outcome of one rule of a batch: `error` is set when the kernel (or validation) refused it. */
export interface RuleResult {
  /** The rule, as given. */
  rule: RuleSpec;
  /** Why it failed; absent on success. On delete, code "ENOENT" means the rule was already gone. */
  error?: NetlinkError;
}

const DEFAULT_BATCH_SIZE = 1024;
/** Batch size when the receive buffer cannot be raised (no NET_ADMIN): 128 acks fit rmem_max. */
const UNPRIVILEGED_BATCH_SIZE = 128;
/** Receive-buffer bytes asked per ack of a batch (the kernel doubles it; an ack costs ~832). */
const RCVBUF_PER_ACK = 1024;
/** Most bytes per sendto: below the default 212,992-byte send buffer. */
const MAX_SEND_BYTES = 128 * 1024;
/** Batches at least this long are sent on a worker thread so the event loop stays free. */
const ASYNC_SEND_MIN = 32;
/** How long to wait for a reply that is not queued yet (acks normally are, before sendto returns). */
const REPLY_TIMEOUT_MS = 5000;
const DUMP_ATTEMPTS = 4;
const RECV_BUFFER_BYTES = 64 * 1024;

/** An rtnetlink socket for rules: batched add and delete with per-rule errors, and dumps. */
export class RuleSocket implements Disposable {
  #socket: NetlinkSocket;
  #seq: number;
  #batchSize: number;
  #recvBuffer = new Uint8Array(RECV_BUFFER_BYTES);
  #recvView = new DataView(this.#recvBuffer.buffer);
  #dump = new DumpBuffer();
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(socket: NetlinkSocket, batchSize: number) {
    this.#socket = socket;
    this.#batchSize = batchSize;
    this.#seq = (Date.now() & 0x3fffffff) >>> 0;
  }

  /** Opens a socket (NETLINK_CAP_ACK and NETLINK_EXT_ACK on, receive buffer sized for a batch). */
  static open(options: RuleSocketOptions = {}): RuleSocket {
    let batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
    if (!Number.isInteger(batchSize) || batchSize < 1) {
      throw new RangeError(`Invalid batchSize "${batchSize}": expected a positive integer`);
    }
    const socket = NetlinkSocket.open({ libraryPath: options.libraryPath, op: "open" });
    try {
      socket.setNetlinkOption(NETLINK_CAP_ACK, 1);
      socket.setNetlinkOption(NETLINK_EXT_ACK, 1);
      const rcvbuf = Math.max(batchSize, 64) * RCVBUF_PER_ACK;
      if (socket.setSocketOption(SO_RCVBUFFORCE, rcvbuf) !== 0) {
        // Without NET_ADMIN only rmem_max is allowed: smaller batches so acks still fit.
        socket.setSocketOption(SO_RCVBUF, rcvbuf);
        batchSize = Math.min(batchSize, UNPRIVILEGED_BATCH_SIZE);
      }
    } catch (error: unknown) {
      socket.close();
      throw error;
    }
    return new RuleSocket(socket, batchSize);
  }

  /** The socket's netlink port id. */
  get portId(): number {
    return this.#socket.portId;
  }

  /**
   * Adds rules (`ip rule add … ` for each, in batches); one result per rule, in order. A rule
   * that fails (EEXIST, EINVAL, …) does not stop the others.
   */
  addRules(rules: readonly RuleSpec[], options: AddRulesOptions = {}): Promise<RuleResult[]> {
    const flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE |
      (options.exclusive === false ? 0 : NLM_F_EXCL);
    // Descending priority: each insert finds its place at the head of the kernel's sorted list.
    const order = sortedIndices(rules, (a, b) => b.priority - a.priority);
    return this.#exclusive(() => this.#apply("add", RTM_NEWRULE, flags, rules, order));
  }

  /**
   * Deletes rules (`ip rule del …` for each, in batches), matching source, priority, table,
   * protocol and any other selector given; one result per rule, in order. A rule already gone
   * has an error with code "ENOENT", which callers can treat as success.
   */
  deleteRules(rules: readonly RuleSpec[]): Promise<RuleResult[]> {
    // Ascending priority: each match is found near the head of the kernel's list (~30x cheaper).
    const order = sortedIndices(rules, (a, b) => a.priority - b.priority);
    return this.#exclusive(() =>
      this.#apply("delete", RTM_DELRULE, NLM_F_REQUEST | NLM_F_ACK, rules, order)
    );
  }

  /** Every rule of both families, or of one (`ip rule show` and `ip -6 rule show`), in kernel order. */
  listRules(options: ListRulesOptions = {}): Promise<KernelRule[]> {
    return this.#exclusive(() => {
      this.#dumpRules(options.family);
      return this.#dump.decode(options.family);
    });
  }

  /**
   * Dumps both families' rules; undefined when they are byte for byte the rules `since` was
   * taken of (nothing decoded, nothing allocated: an idle resync of 10k rules costs the dump
   * and one compare), else the rules decoded and their image.
   */
  listRulesIfChanged(since?: RuleListImage): Promise<RuleList | undefined> {
    return this.#exclusive(() => {
      this.#dumpRules(undefined);
      if (since !== undefined && this.#dump.sameAs(since)) return undefined;
      return { rules: this.#dump.decode(), image: this.#dump.image() };
    });
  }

  /** Closes the socket; idempotent. An operation in flight fails. */
  close(): void {
    void this.#socket.close();
  }

  /** Same as `close()`. */
  [Symbol.dispose](): void {
    this.close();
  }

  #exclusive<T>(operation: () => T | Promise<T>): Promise<T> {
    const run = this.#queue.then(() => {
      if (this.#socket.closed) throw new Deno.errors.BadResource("Rule socket is closed");
      return operation();
    });
    this.#queue = run.catch(() => {});
    return run;
  }

  #nextSeq(): number {
    this.#seq = (this.#seq + 1) >>> 0;
    return this.#seq;
  }

  async #apply(
    op: NetlinkOp,
    type: number,
    flags: number,
    rules: readonly RuleSpec[],
    order: number[],
  ): Promise<RuleResult[]> {
    const results: RuleResult[] = rules.map((rule) => ({ rule }));
    let next = 0;
    while (next < order.length) {
      // One chunk: at most batchSize messages and MAX_SEND_BYTES bytes.
      const chunk: number[] = [];
      let bytes = 0;
      while (next < order.length && chunk.length < this.#batchSize) {
        const index = order[next]!;
        const length = ruleMessageLength(rules[index]!);
        if (chunk.length > 0 && bytes + length > MAX_SEND_BYTES) break;
        chunk.push(index);
        bytes += length;
        next++;
      }
      await this.#applyChunk(op, type, flags, rules, chunk, bytes, results);
    }
    return results;
  }

  async #applyChunk(
    op: NetlinkOp,
    type: number,
    flags: number,
    rules: readonly RuleSpec[],
    chunk: number[],
    bytes: number,
    results: RuleResult[],
  ): Promise<void> {
    const buffer = new Uint8Array(bytes);
    const firstSeq = (this.#seq + 1) >>> 0;
    const sent: number[] = []; // rule index per sequence offset
    let offset = 0;
    for (const index of chunk) {
      const rule = rules[index]!;
      try {
        offset = writeRuleMessage(buffer, offset, rule, {
          type,
          flags,
          seq: (firstSeq + sent.length) >>> 0,
        });
      } catch (error: unknown) {
        if (!(error instanceof InvalidRuleError)) throw error;
        results[index]!.error = new NetlinkError(op, EINVAL, {
          rule,
          detail: error.message,
          cause: error,
        });
        continue;
      }
      sent.push(index);
    }
    if (sent.length === 0) return;
    this.#seq = (firstSeq + sent.length - 1) >>> 0;
    const message = buffer.subarray(0, offset);
    const n = sent.length >= ASYNC_SEND_MIN
      ? await this.#socket.sendAsync(message)
      : this.#socket.send(message);
    if (this.#socket.closed) {
      throw new Deno.errors.BadResource("Rule socket was closed during the batch");
    }
    if (n < 0) {
      sent.forEach((index, k) => {
        results[index]!.error = new NetlinkError(op, -n, {
          rule: rules[index]!,
          seq: (firstSeq + k) >>> 0,
        });
      });
      return;
    }
    const acked = new Uint8Array(sent.length);
    let pending = sent.length;
    let overflowed = false;
    let failure: { errno: number; cause?: unknown } | undefined;
    while (pending > 0 && failure === undefined) {
      const got = this.#socket.recv(this.#recvBuffer);
      if (got === -EINTR) continue;
      if (got === -ENOBUFS) {
        overflowed = true;
        continue;
      }
      if (got === -EAGAIN) {
        // Acks are queued before sendto returns; an empty queue means they were dropped.
        if (!overflowed && this.#socket.waitSync(REPLY_TIMEOUT_MS)) continue;
        failure = { errno: overflowed ? ENOBUFS : ETIMEDOUT };
        break;
      }
      if (got < 0) {
        failure = { errno: -got };
        break;
      }
      let messages: MessageHeader[];
      try {
        messages = readMessages(this.#recvBuffer, got);
      } catch (error: unknown) {
        failure = { errno: EPROTO, cause: error };
        break;
      }
      for (const m of messages) {
        if (m.type !== NLMSG_ERROR) continue;
        const k = (m.seq - firstSeq) >>> 0;
        if (k >= sent.length || acked[k]) continue; // a stale ack of an earlier request
        acked[k] = 1;
        pending--;
        const ack = decodeAck(this.#recvBuffer, m, this.#recvView);
        if (ack.errno !== 0) {
          const index = sent[k]!;
          results[index]!.error = new NetlinkError(op, ack.errno, {
            rule: rules[index]!,
            seq: m.seq,
            ...(ack.extack ? { extack: ack.extack } : {}),
          });
        }
      }
    }
    if (failure === undefined) return;
    sent.forEach((index, k) => {
      if (acked[k]) return;
      results[index]!.error = new NetlinkError(op, failure.errno, {
        rule: rules[index]!,
        seq: (firstSeq + k) >>> 0,
        detail: "no acknowledgement received",
        ...(failure.cause === undefined ? {} : { cause: failure.cause }),
      });
    });
  }

  /** Dumps into #dump, again while the kernel flags the dump as interrupted. */
  #dumpRules(family: Family | undefined): void {
    for (let attempt = 0; attempt < DUMP_ATTEMPTS; attempt++) {
      if (this.#dumpOnce(family)) return;
    }
    throw new NetlinkError("dump", EINTR, {
      detail: "the rule list kept changing during the dump",
    });
  }

  /** One dump into #dump; false when the kernel flagged it as interrupted (the list changed meanwhile). */
  #dumpOnce(family: Family | undefined): boolean {
    const seq = this.#nextSeq();
    const request = encodeDumpRequest(family === undefined ? { seq } : { seq, family });
    const n = this.#socket.send(request);
    if (n < 0) throw new NetlinkError("dump", -n, { seq });
    this.#dump.reset();
    let interrupted = false;
    for (;;) {
      const got = this.#socket.recv(this.#dump.space());
      if (got === -EINTR) continue;
      if (got === -EAGAIN) {
        if (this.#socket.waitSync(REPLY_TIMEOUT_MS)) continue;
        throw new NetlinkError("dump", ETIMEDOUT, {
          seq,
          detail: "the dump stopped before its end",
        });
      }
      if (got < 0) throw new NetlinkError("dump", -got, { seq });
      const { end, interrupted: flagged } = this.#dump.accept(got, seq);
      if (flagged) interrupted = true;
      if (end === undefined) continue;
      if (end.errno !== 0) {
        throw new NetlinkError("dump", end.errno, {
          seq,
          ...(end.extack ? { extack: end.extack } : {}),
        });
      }
      return !interrupted;
    }
  }
}

function sortedIndices(
  rules: readonly RuleSpec[],
  compare: (a: RuleSpec, b: RuleSpec) => number,
): number[] {
  const order = rules.map((_, i) => i);
  // Array.prototype.sort is stable: equal priorities keep the caller's order.
  order.sort((i, j) => {
    const a = rules[i]!;
    const b = rules[j]!;
    return compare(a, b) || 0;
  });
  return order;
}
