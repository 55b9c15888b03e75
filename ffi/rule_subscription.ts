// RuleSubscription: rule changes from the kernel (`ip monitor rule`) as an async iterable.
import type { Family } from "../net/address.ts";
import {
  EAGAIN,
  EINTR,
  ENOBUFS,
  RTM_DELRULE,
  RTM_NEWRULE,
  RTNLGRP_IPV4_RULE,
  RTNLGRP_IPV6_RULE,
  SO_RCVBUF,
  SO_RCVBUFFORCE,
} from "./constants.ts";
import { NetlinkError } from "./errors.ts";
import { NetlinkSocket } from "./netlink_socket.ts";
import type { KernelRule } from "./rule.ts";
import { decodeRuleMessage, readMessages } from "./rule_codec.ts";

/** A rule change, or a signal that changes were lost and the caller must dump again. */
export type RuleEvent =
  | RuleChange
  | { type: "resync"; reason: "overflow" | "malformed"; error: Error };

/** A rule the kernel added or deleted. */
export interface RuleChange {
  /** What happened to the rule. */
  type: "added" | "deleted";
  /** The rule. */
  rule: KernelRule;
  /** Port id of the socket whose request made the change (`RuleSocket.portId` for our own). */
  portId: number;
}

/** Options of `RuleSubscription.open`. */
export interface RuleSubscriptionOptions {
  /** libmnl path; default $IPRULE_LIBMNL_PATH, else /usr/lib/<arch>-linux-gnu/libmnl.so.0. */
  libraryPath?: string;
  /** Only this family; default both. */
  family?: Family;
  /** Ends the subscription when aborted. */
  signal?: AbortSignal;
  /** Receive buffer in bytes (default 4 MiB; past rmem_max only with NET_ADMIN). */
  receiveBufferSize?: number;
}

const DEFAULT_RECEIVE_BUFFER = 4 * 1024 * 1024;
/** A waiting receive returns at least this often, even if the wake-up eventfd failed. */
const WAIT_TIMEOUT_MS = 1000;
const RECV_BUFFER_BYTES = 64 * 1024;
/** Datagrams read per turn before events are handed out, so a flood cannot hog the event loop. */
const MAX_DATAGRAMS_PER_DRAIN = 256;

/**
 * A subscription to RTNLGRP_IPV4_RULE and RTNLGRP_IPV6_RULE. Iterate it with `for await`; the
 * wait for events runs on a worker thread, so the event loop stays free. A receive-buffer
 * overflow (ENOBUFS) yields `{ type: "resync" }`. `close()` (or the abort signal) ends the
 * iteration at once and lets the process exit; leaving a `for await` loop closes it too.
 */
export class RuleSubscription implements AsyncIterable<RuleEvent>, AsyncDisposable {
  #socket: NetlinkSocket;
  #buffer = new Uint8Array(RECV_BUFFER_BYTES);
  #view = new DataView(this.#buffer.buffer);
  #events: AsyncGenerator<RuleEvent, void, undefined> | undefined;
  #signal: AbortSignal | undefined;
  #onAbort = () => void this.close();

  private constructor(socket: NetlinkSocket, signal: AbortSignal | undefined) {
    this.#socket = socket;
    this.#signal = signal;
    signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  /** Subscribes to rule changes (`ip monitor rule`); events start queueing at once. */
  static open(options: RuleSubscriptionOptions = {}): RuleSubscription {
    const groups = (options.family === 6 ? 0 : 1 << (RTNLGRP_IPV4_RULE - 1)) |
      (options.family === 4 ? 0 : 1 << (RTNLGRP_IPV6_RULE - 1));
    const socket = NetlinkSocket.open({
      libraryPath: options.libraryPath,
      groups,
      wakeable: true,
      op: "subscribe",
    });
    const size = options.receiveBufferSize ?? DEFAULT_RECEIVE_BUFFER;
    if (socket.setSocketOption(SO_RCVBUFFORCE, size) !== 0) socket.setSocketOption(SO_RCVBUF, size);
    const subscription = new RuleSubscription(socket, options.signal);
    if (options.signal?.aborted) void subscription.close();
    return subscription;
  }

  /** The events; one iterator per subscription. */
  [Symbol.asyncIterator](): AsyncGenerator<RuleEvent, void, undefined> {
    this.#events ??= this.#run();
    return this.#events;
  }

  /** Ends the subscription and releases the socket; idempotent. Resolves once released. */
  close(): Promise<void> {
    this.#signal?.removeEventListener("abort", this.#onAbort);
    return this.#socket.close();
  }

  /** Same as `close()`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async *#run(): AsyncGenerator<RuleEvent, void, undefined> {
    try {
      while (!this.#socket.closed) {
        const events = this.#drain();
        if (events.length > 0) {
          yield* events;
          continue;
        }
        await this.#socket.waitAsync(WAIT_TIMEOUT_MS);
      }
    } finally {
      await this.close();
    }
  }

  /** Reads every queued datagram without blocking. */
  #drain(): RuleEvent[] {
    const events: RuleEvent[] = [];
    for (let i = 0; i < MAX_DATAGRAMS_PER_DRAIN && !this.#socket.closed; i++) {
      const n = this.#socket.recv(this.#buffer);
      if (n === -EAGAIN) break;
      if (n === -EINTR) continue;
      if (n === -ENOBUFS) {
        // The kernel dropped events: one resync signal, then keep reading what was queued.
        if (events.at(-1)?.type !== "resync") {
          const error = new NetlinkError("receive", ENOBUFS, { detail: "rule events were lost" });
          events.push({ type: "resync", reason: "overflow", error });
        }
        continue;
      }
      if (n < 0) throw new NetlinkError("receive", -n);
      try {
        for (const m of readMessages(this.#buffer, n)) {
          if (m.type !== RTM_NEWRULE && m.type !== RTM_DELRULE) continue;
          const rule = decodeRuleMessage(this.#buffer, m, this.#view);
          if (rule === undefined) continue;
          events.push({ type: m.type === RTM_NEWRULE ? "added" : "deleted", rule, portId: m.pid });
        }
      } catch (error: unknown) {
        const cause = error instanceof Error ? error : new Error(String(error));
        events.push({ type: "resync", reason: "malformed", error: cause });
      }
    }
    return events;
  }
}
