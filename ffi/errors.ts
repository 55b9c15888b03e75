// Typed errors of the netlink engine.
import { getSystemErrorMessage, getSystemErrorName } from "node:util";
import { EEXIST, ENOENT, EPERM } from "./constants.ts";
import { formatRule, type RuleSpec } from "./rule.ts";

/** What the engine was doing when a netlink error happened. */
export type NetlinkOp = "open" | "add" | "delete" | "dump" | "subscribe" | "receive";

const OP_VERBS: Record<NetlinkOp, string> = {
  open: "open the netlink socket",
  add: "add rule",
  delete: "delete rule",
  dump: "dump rules",
  subscribe: "subscribe to rule changes",
  receive: "receive rule changes",
};

/** Options of a `NetlinkError`. */
export interface NetlinkErrorOptions {
  /** The kernel's extended-ack message. */
  extack?: string;
  /** Sequence number of the request the error answers. */
  seq?: number;
  /** The rule the error is about. */
  rule?: RuleSpec;
  /** Extra words after the errno text. */
  detail?: string;
  /** The underlying error. */
  cause?: unknown;
}

/** An errno from the kernel (or from libc) for one netlink operation, e.g. EEXIST on one rule of a batch. */
export class NetlinkError extends Error {
  override name = "NetlinkError";
  /** What was being done. */
  readonly op: NetlinkOp;
  /** Positive errno, e.g. 17. */
  readonly errno: number;
  /** Errno name, e.g. "EEXIST". */
  readonly code: string;
  /** The kernel's extended-ack message, when it sent one. */
  readonly extack: string | undefined;
  /** Sequence number of the request, when the error answers one. */
  readonly seq: number | undefined;
  /** The rule, for add and delete. */
  readonly rule: RuleSpec | undefined;

  constructor(op: NetlinkOp, errno: number, options: NetlinkErrorOptions = {}) {
    super(
      netlinkErrorMessage(op, errno, options),
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.op = op;
    this.errno = errno;
    this.code = errnoName(errno);
    this.extack = options.extack;
    this.seq = options.seq;
    this.rule = options.rule;
  }
}

/** A netlink reply that does not parse: truncated, bad lengths or bad attributes. */
export class NetlinkDecodeError extends Error {
  override name = "NetlinkDecodeError";
  /** Byte offset of the problem in the buffer. */
  readonly offset: number;

  constructor(message: string, offset: number) {
    super(`${message} at offset ${offset}`);
    this.offset = offset;
  }
}

/** A rule that cannot be encoded (bad address, prefix length or number). */
export class InvalidRuleError extends TypeError {
  override name = "InvalidRuleError";
  /** The offending field, e.g. "src". */
  readonly field: string;

  constructor(field: string, message: string) {
    super(message);
    this.field = field;
  }
}

/** libmnl could not be loaded from `path`. */
export class LibmnlLoadError extends Error {
  override name = "LibmnlLoadError";
  /** The path that was tried. */
  readonly path: string;

  constructor(path: string, options: { cause?: unknown } = {}) {
    const reason = options.cause instanceof Error ? `: ${options.cause.message}` : "";
    super(
      `Cannot load libmnl from "${path}"${reason}; install the Debian package "libmnl0" ` +
        `or point IPRULE_LIBMNL_PATH at libmnl.so.0`,
      options,
    );
    this.path = path;
  }
}

/** The errno name of a positive errno, e.g. "EEXIST" for 17. */
export function errnoName(errno: number): string {
  if (errno === 95) return "EOPNOTSUPP"; // libuv calls Linux's 95 ENOTSUP, the kernel EOPNOTSUPP
  try {
    return getSystemErrorName(-errno);
  } catch {
    return `E${errno}`;
  }
}

function errnoText(errno: number): string {
  try {
    return getSystemErrorMessage(-errno);
  } catch {
    return `errno ${errno}`;
  }
}

/** What EEXIST and ENOENT mean for a rule. */
const RULE_ERRNO_TEXT: Record<number, string> = {
  [EEXIST]: "the rule exists",
  [ENOENT]: "no such rule",
};

function netlinkErrorMessage(op: NetlinkOp, errno: number, options: NetlinkErrorOptions): string {
  const subject = options.rule === undefined ? "" : ` "${formatRule(options.rule)}"`;
  const text = (options.rule !== undefined ? RULE_ERRNO_TEXT[errno] : undefined) ??
    errnoText(errno);
  let message = `Cannot ${OP_VERBS[op]}${subject}: ${text} (${errnoName(errno)})`;
  if (options.detail !== undefined) message += `: ${options.detail}`;
  if (options.extack !== undefined && options.extack !== "") {
    message += `, kernel says "${options.extack}"`;
  }
  if (errno === EPERM) {
    message += "; the process needs the NET_ADMIN capability in this network namespace";
  }
  return message;
}
