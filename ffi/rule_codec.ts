// Netlink rule messages in TypeScript: RTM_NEWRULE / RTM_DELRULE requests, RTM_GETRULE dump
// requests, and the replies (rules, acks, errors, dump ends). Pure: no I/O, no FFI.
//
// Layout: struct nlmsghdr (16 bytes, host order) | struct fib_rule_hdr (12 bytes) | attributes
// (struct nlattr: u16 len, u16 type, value, padded to 4 bytes). Addresses are network order.
import { addressLength, type Family, formatAddress, writeAddress } from "../net/address.ts";
import {
  AF_INET,
  AF_INET6,
  AF_UNSPEC,
  FIB_RULE_HDRLEN,
  FIB_RULE_INVERT,
  FR_ACT_GOTO,
  FR_ACT_TO_TBL,
  FRA_DST,
  FRA_FLOW,
  FRA_FWMARK,
  FRA_FWMASK,
  FRA_GOTO,
  FRA_IIFNAME,
  FRA_MAX_KNOWN,
  FRA_OIFNAME,
  FRA_PAD,
  FRA_PRIORITY,
  FRA_PROTOCOL,
  FRA_SRC,
  FRA_SUPPRESS_IFGROUP,
  FRA_SUPPRESS_PREFIXLEN,
  FRA_TABLE,
  NLA_HDRLEN,
  NLA_TYPE_MASK,
  NLM_F_ACK,
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  NLM_F_DUMP,
  NLM_F_REQUEST,
  NLMSG_ERROR,
  NLMSG_HDRLEN,
  NLMSGERR_ATTR_MSG,
  NLMSGERR_ATTR_OFFS,
  RT_TABLE_MAX_BYTE,
  RT_TABLE_UNSPEC,
  RTM_DELRULE,
  RTM_GETRULE,
  RTM_NEWRULE,
} from "./constants.ts";
import { InvalidRuleError, NetlinkDecodeError } from "./errors.ts";
import type { KernelRule, RuleSpec } from "./rule.ts";

/** Header fields of a request the caller chooses. */
export interface RequestHeader {
  /** RTM_NEWRULE or RTM_DELRULE. */
  type: number;
  /** NLM_F_* flags, e.g. `NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL`. */
  flags: number;
  /** Sequence number that the ack will carry. */
  seq: number;
  /** Sender port id; 0 lets the kernel fill it in. */
  pid?: number;
}

/** One netlink message in a buffer. */
export interface MessageHeader {
  /** Offset of the message (its nlmsghdr) in the buffer. */
  offset: number;
  /** nlmsg_len: header plus payload, unpadded. */
  length: number;
  /** nlmsg_type. */
  type: number;
  /** nlmsg_flags. */
  flags: number;
  /** nlmsg_seq. */
  seq: number;
  /** nlmsg_pid. */
  pid: number;
}

/** An NLMSG_ERROR (ack when errno is 0) or NLMSG_DONE payload. */
export interface AckInfo {
  /** Positive errno, 0 for success. */
  errno: number;
  /** The kernel's extended-ack message, "" when none. */
  extack: string;
  /** Offset of the offending attribute in the request, when the kernel named one. */
  attributeOffset: number | undefined;
}

const U32_MAX = 0xffffffff;
const IFNAMSIZ = 16;
const EMPTY = new Uint8Array(0);
const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

function align4(n: number): number {
  return (n + 3) & ~3;
}

function checkInteger(field: string, value: unknown, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > max) {
    throw new InvalidRuleError(
      field,
      `Invalid ${field} "${String(value)}": expected an integer 0..${max}`,
    );
  }
  return value;
}

function checkFamily(family: unknown): Family {
  if (family !== 4 && family !== 6) {
    throw new InvalidRuleError("family", `Invalid family "${String(family)}": expected 4 or 6`);
  }
  return family;
}

function checkName(field: string, name: string | undefined): Uint8Array | undefined {
  if (name === undefined || name === "") return undefined;
  const bytes = textEncoder.encode(name);
  if (bytes.length >= IFNAMSIZ || bytes.includes(0)) {
    throw new InvalidRuleError(
      field,
      `Invalid ${field} "${name}": expected an interface name of at most 15 bytes`,
    );
  }
  return bytes;
}

/** Byte length of the request `writeRuleMessage` writes for `rule` (4-byte aligned). */
export function ruleMessageLength(rule: RuleSpec): number {
  const addr = addressLength(rule.family);
  let n = NLMSG_HDRLEN + FIB_RULE_HDRLEN;
  if (rule.srcLen > 0) n += NLA_HDRLEN + addr;
  if (rule.dstLen) n += NLA_HDRLEN + addr;
  n += 3 * 8; // FRA_TABLE, FRA_PRIORITY, FRA_PROTOCOL (u8 padded to 8)
  if (rule.iif) n += align4(NLA_HDRLEN + textEncoder.encode(rule.iif).length + 1);
  if (rule.oif) n += align4(NLA_HDRLEN + textEncoder.encode(rule.oif).length + 1);
  if (rule.fwmark || rule.fwmask) n += 16;
  if ((rule.action ?? FR_ACT_TO_TBL) === FR_ACT_GOTO) n += 8;
  if (rule.extra) n += align4(rule.extra.length);
  return n;
}

/**
 * Writes the RTM_NEWRULE / RTM_DELRULE request for `rule` at `offset` and returns the offset
 * after it. FRA_TABLE, FRA_PRIORITY and FRA_PROTOCOL are always sent (a delete with fewer
 * attributes can match another rule, and the header's table byte cannot hold ids above 255).
 * Throws `InvalidRuleError` without writing anything when the rule is invalid.
 */
export function writeRuleMessage(
  bytes: Uint8Array,
  offset: number,
  rule: RuleSpec,
  header: RequestHeader,
): number {
  const family = checkFamily(rule.family);
  const maxLen = addressLength(family) * 8;
  const srcLen = checkInteger("srcLen", rule.srcLen, maxLen);
  const dstLen = checkInteger("dstLen", rule.dstLen ?? 0, maxLen);
  const table = checkInteger("table", rule.table, U32_MAX);
  const priority = checkInteger("priority", rule.priority, U32_MAX);
  const protocol = checkInteger("protocol", rule.protocol, 255);
  const action = checkInteger("action", rule.action ?? FR_ACT_TO_TBL, 255);
  const tos = checkInteger("tos", rule.tos ?? 0, 255);
  const flags = checkInteger("flags", rule.flags ?? 0, U32_MAX) & FIB_RULE_INVERT;
  const fwmark = checkInteger("fwmark", rule.fwmark ?? 0, U32_MAX);
  const fwmask = checkInteger("fwmask", rule.fwmask ?? 0, U32_MAX);
  const goto = checkInteger("goto", rule.goto ?? 0, U32_MAX);
  const iif = checkName("iif", rule.iif);
  const oif = checkName("oif", rule.oif);
  const extra = rule.extra ?? EMPTY;
  if (extra.length % 4 !== 0) {
    throw new InvalidRuleError(
      "extra",
      `Invalid extra attributes of length "${extra.length}": expected a multiple of 4`,
    );
  }
  const length = ruleMessageLength(rule);
  if (offset + length > bytes.length) {
    throw new RangeError(`Buffer too small for a rule message of "${length}" bytes`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = offset + NLMSG_HDRLEN + FIB_RULE_HDRLEN;
  // Addresses first: an invalid one throws before anything else is written.
  if (srcLen > 0) at = putAddress(bytes, view, at, "src", family, rule.src);
  if (dstLen > 0) at = putAddress(bytes, view, at, "dst", family, rule.dst);
  at = putU32(view, at, FRA_TABLE, table);
  at = putU32(view, at, FRA_PRIORITY, priority);
  view.setUint32(at, 0, true); // clears the padding of the u8
  view.setUint32(at + 4, 0, true);
  view.setUint16(at, NLA_HDRLEN + 1, true);
  view.setUint16(at + 2, FRA_PROTOCOL, true);
  view.setUint8(at + 4, protocol);
  at += 8;
  if (iif) at = putName(bytes, view, at, FRA_IIFNAME, iif);
  if (oif) at = putName(bytes, view, at, FRA_OIFNAME, oif);
  if (fwmark || fwmask) {
    at = putU32(view, at, FRA_FWMARK, fwmark);
    at = putU32(view, at, FRA_FWMASK, fwmask);
  }
  if (action === FR_ACT_GOTO) at = putU32(view, at, FRA_GOTO, goto);
  bytes.set(extra, at);
  at += extra.length;

  view.setUint32(offset, length, true);
  view.setUint16(offset + 4, header.type, true);
  view.setUint16(offset + 6, header.flags, true);
  view.setUint32(offset + 8, header.seq >>> 0, true);
  view.setUint32(offset + 12, header.pid ?? 0, true);
  const h = offset + NLMSG_HDRLEN;
  view.setUint8(h, family === 4 ? AF_INET : AF_INET6);
  view.setUint8(h + 1, dstLen);
  view.setUint8(h + 2, srcLen);
  view.setUint8(h + 3, tos);
  view.setUint8(h + 4, table <= RT_TABLE_MAX_BYTE ? table : RT_TABLE_UNSPEC);
  view.setUint8(h + 5, 0);
  view.setUint8(h + 6, 0);
  view.setUint8(h + 7, action);
  view.setUint32(h + 8, flags, true);
  return at;
}

function putU32(view: DataView, at: number, type: number, value: number): number {
  view.setUint16(at, 8, true);
  view.setUint16(at + 2, type, true);
  view.setUint32(at + 4, value, true);
  return at + 8;
}

/**
 * Writes FRA_SRC or FRA_DST (`field`) with the address `text`; throws InvalidRuleError when it is
 * not an IPv`family` address.
 */
function putAddress(
  bytes: Uint8Array,
  view: DataView,
  at: number,
  field: "src" | "dst",
  family: Family,
  text: string | undefined,
): number {
  if (!writeAddress(bytes, at + NLA_HDRLEN, family, text ?? "")) {
    throw new InvalidRuleError(
      field,
      `Invalid ${field} "${text}": expected an IPv${family} address`,
    );
  }
  const len = NLA_HDRLEN + addressLength(family);
  view.setUint16(at, len, true);
  view.setUint16(at + 2, field === "src" ? FRA_SRC : FRA_DST, true);
  return at + len;
}

function putName(
  bytes: Uint8Array,
  view: DataView,
  at: number,
  type: number,
  name: Uint8Array,
): number {
  const len = NLA_HDRLEN + name.length + 1;
  bytes.fill(0, at, at + align4(len));
  view.setUint16(at, len, true);
  view.setUint16(at + 2, type, true);
  bytes.set(name, at + NLA_HDRLEN);
  return at + align4(len);
}

/** The RTM_NEWRULE / RTM_DELRULE request for one rule (`ip rule add` / `ip rule del`). */
export function encodeRuleMessage(rule: RuleSpec, header: RequestHeader): Uint8Array {
  const bytes = new Uint8Array(ruleMessageLength(rule));
  writeRuleMessage(bytes, 0, rule, header);
  return bytes;
}

/** The RTM_GETRULE dump request for one family or, without one, for every family (`ip rule show`). */
export function encodeDumpRequest(
  options: { seq: number; family?: Family; pid?: number },
): Uint8Array {
  const bytes = new Uint8Array(NLMSG_HDRLEN + FIB_RULE_HDRLEN);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, bytes.length, true);
  view.setUint16(4, RTM_GETRULE, true);
  view.setUint16(6, NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP, true);
  view.setUint32(8, options.seq >>> 0, true);
  view.setUint32(12, options.pid ?? 0, true);
  const family = options.family === undefined
    ? AF_UNSPEC
    : options.family === 4
    ? AF_INET
    : AF_INET6;
  view.setUint8(NLMSG_HDRLEN, family);
  return bytes;
}

/** Splits `length` bytes of `bytes` into netlink messages; throws `NetlinkDecodeError` on a bad length. */
export function readMessages(bytes: Uint8Array, length = bytes.length): MessageHeader[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const messages: MessageHeader[] = [];
  let offset = 0;
  while (offset < length) {
    if (length - offset < NLMSG_HDRLEN) {
      throw new NetlinkDecodeError(
        `Truncated netlink header of "${length - offset}" bytes`,
        offset,
      );
    }
    const len = view.getUint32(offset, true);
    if (len < NLMSG_HDRLEN || len > length - offset) {
      throw new NetlinkDecodeError(`Invalid netlink message length "${len}"`, offset);
    }
    messages.push({
      offset,
      length: len,
      type: view.getUint16(offset + 4, true),
      flags: view.getUint16(offset + 6, true),
      seq: view.getUint32(offset + 8, true),
      pid: view.getUint32(offset + 12, true),
    });
    offset += align4(len);
  }
  return messages;
}

/**
 * Decodes an RTM_NEWRULE / RTM_DELRULE message (dump entry or event). Returns undefined for
 * families other than IPv4 and IPv6 (e.g. multicast-routing rules); skips unknown attributes;
 * throws `NetlinkDecodeError` when the message is malformed.
 */
export function decodeRuleMessage(
  bytes: Uint8Array,
  message: MessageHeader,
  view: DataView = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength),
): KernelRule | undefined {
  const h = message.offset + NLMSG_HDRLEN;
  const end = message.offset + message.length;
  if (end - h < FIB_RULE_HDRLEN) {
    throw new NetlinkDecodeError(`Truncated fib_rule_hdr of "${end - h}" bytes`, h);
  }
  const afamily = view.getUint8(h);
  if (afamily !== AF_INET && afamily !== AF_INET6) return undefined;
  const family: Family = afamily === AF_INET ? 4 : 6;
  const addrLen = addressLength(family);
  const dstLen = view.getUint8(h + 1);
  const srcLen = view.getUint8(h + 2);
  if (srcLen > addrLen * 8 || dstLen > addrLen * 8) {
    throw new NetlinkDecodeError(
      `Invalid prefix length "${Math.max(srcLen, dstLen)}" for IPv${family}`,
      h,
    );
  }
  let table = view.getUint8(h + 4);
  const action = view.getUint8(h + 7);
  let priority = 0;
  let protocol = 0;
  let srcAt = -1;
  let dstAt = -1;
  let iif = "";
  let oif = "";
  let fwmark = 0;
  let fwmask = 0;
  let goto = 0;
  let extraParts: Uint8Array[] | undefined;
  let at = h + FIB_RULE_HDRLEN;
  while (at < end) {
    if (end - at < NLA_HDRLEN) throw new NetlinkDecodeError("Truncated attribute header", at);
    const len = view.getUint16(at, true);
    const type = view.getUint16(at + 2, true) & NLA_TYPE_MASK;
    if (len < NLA_HDRLEN || len > end - at) {
      throw new NetlinkDecodeError(`Invalid length "${len}" of attribute "${type}"`, at);
    }
    const value = at + NLA_HDRLEN;
    const size = len - NLA_HDRLEN;
    switch (type) {
      case FRA_SRC:
      case FRA_DST:
        if (size !== addrLen) {
          throw new NetlinkDecodeError(`Invalid address length "${size}" for IPv${family}`, at);
        }
        if (type === FRA_SRC) srcAt = value;
        else dstAt = value;
        break;
      case FRA_TABLE:
        table = u32(view, value, size, type, at);
        break;
      case FRA_PRIORITY:
        priority = u32(view, value, size, type, at);
        break;
      case FRA_PROTOCOL:
        if (size < 1) throw new NetlinkDecodeError(`Empty attribute "${type}"`, at);
        protocol = view.getUint8(value);
        break;
      case FRA_IIFNAME:
        iif = cString(bytes, value, size);
        break;
      case FRA_OIFNAME:
        oif = cString(bytes, value, size);
        break;
      case FRA_FWMARK:
        fwmark = u32(view, value, size, type, at);
        break;
      case FRA_FWMASK:
        fwmask = u32(view, value, size, type, at);
        break;
      case FRA_GOTO:
        goto = u32(view, value, size, type, at);
        break;
      case FRA_SUPPRESS_PREFIXLEN:
      case FRA_SUPPRESS_IFGROUP:
        // -1 means unset: the kernel sends it with every rule.
        if (u32(view, value, size, type, at) === 0xffffffff) break;
        (extraParts ??= []).push(bytes.subarray(at, at + len));
        break;
      default:
        // The other selectors (FRA_FLOW and up, the ones not decoded above) are kept raw so a
        // delete can send them back; unknown types are skipped.
        if (type >= FRA_FLOW && type <= FRA_MAX_KNOWN && type !== FRA_PAD) {
          (extraParts ??= []).push(bytes.subarray(at, at + len));
        }
    }
    at += align4(len);
  }
  if (srcLen > 0 && srcAt < 0) {
    throw new NetlinkDecodeError(`Missing source of a /${srcLen} rule`, h);
  }
  if (dstLen > 0 && dstAt < 0) {
    throw new NetlinkDecodeError(`Missing destination of a /${dstLen} rule`, h);
  }
  const extra = extraParts === undefined ? EMPTY : concatAligned(extraParts);
  const tos = view.getUint8(h + 3);
  const flags = view.getUint32(h + 8, true);
  const rule: KernelRule = {
    family,
    src: srcAt < 0 ? (family === 4 ? "0.0.0.0" : "::") : formatAddress(bytes, srcAt, family),
    srcLen,
    table,
    priority,
    protocol,
    action,
    dst: dstAt < 0 ? (family === 4 ? "0.0.0.0" : "::") : formatAddress(bytes, dstAt, family),
    dstLen,
    tos,
    flags,
    iif,
    oif,
    fwmark,
    fwmask,
    goto,
    extra,
    plain: action === FR_ACT_TO_TBL && dstLen === 0 && tos === 0 &&
      (flags & FIB_RULE_INVERT) === 0 &&
      iif === "" && oif === "" && fwmark === 0 && fwmask === 0 && extra.length === 0,
  };
  return rule;
}

function u32(view: DataView, value: number, size: number, type: number, at: number): number {
  if (size < 4) {
    throw new NetlinkDecodeError(`Attribute "${type}" of "${size}" bytes, expected 4`, at);
  }
  return view.getUint32(value, true);
}

function cString(bytes: Uint8Array, at: number, size: number): string {
  let end = at;
  while (end < at + size && bytes[end] !== 0) end++;
  return textDecoder.decode(bytes.subarray(at, end));
}

function concatAligned(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + align4(p.length), 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += align4(part.length);
  }
  return out;
}

/**
 * Decodes the payload of an NLMSG_ERROR (an ack when `errno` is 0) or NLMSG_DONE message,
 * with the extended-ack message when present (NETLINK_EXT_ACK).
 */
export function decodeAck(
  bytes: Uint8Array,
  message: MessageHeader,
  view: DataView = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength),
): AckInfo {
  const p = message.offset + NLMSG_HDRLEN;
  const end = message.offset + message.length;
  if (end - p < 4) {
    // A DONE message from an old kernel carries no error code.
    return { errno: 0, extack: "", attributeOffset: undefined };
  }
  const error = view.getInt32(p, true);
  let extack = "";
  let attributeOffset: number | undefined;
  if ((message.flags & NLM_F_ACK_TLVS) !== 0) {
    let at = p + 4;
    if (message.type === NLMSG_ERROR) {
      if (end - at < NLMSG_HDRLEN) {
        throw new NetlinkDecodeError("Truncated echoed request header", at);
      }
      const echoed = view.getUint32(at, true);
      at += (message.flags & NLM_F_CAPPED) !== 0 ? NLMSG_HDRLEN : align4(echoed);
    }
    while (at + NLA_HDRLEN <= end) {
      const len = view.getUint16(at, true);
      const type = view.getUint16(at + 2, true) & NLA_TYPE_MASK;
      if (len < NLA_HDRLEN || len > end - at) {
        throw new NetlinkDecodeError(
          `Invalid length "${len}" of extended-ack attribute "${type}"`,
          at,
        );
      }
      if (type === NLMSGERR_ATTR_MSG) extack = cString(bytes, at + NLA_HDRLEN, len - NLA_HDRLEN);
      if (type === NLMSGERR_ATTR_OFFS && len >= 8) {
        attributeOffset = view.getUint32(at + NLA_HDRLEN, true);
      }
      at += align4(len);
    }
  }
  return { errno: error === 0 ? 0 : -error, extack, attributeOffset };
}

/** Decodes every IPv4 and IPv6 rule message in a buffer of netlink messages (e.g. a dump reply). */
export function decodeRules(bytes: Uint8Array, length = bytes.length): KernelRule[] {
  const rules: KernelRule[] = [];
  for (const message of readMessages(bytes, length)) {
    if (message.type !== RTM_NEWRULE && message.type !== RTM_DELRULE) continue;
    const rule = decodeRuleMessage(bytes, message);
    if (rule) rules.push(rule);
  }
  return rules;
}
