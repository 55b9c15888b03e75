/**
 * The codec's edges, from bytes built here field by field: every validation with its message,
 * every selector that makes a rule not plain, attribute types at the bounds of what is kept,
 * extended acks in each layout the kernel sends. The kernel-recorded cases are in
 * rule_codec_test.ts.
 */
import assert from "node:assert/strict";
import {
  FIB_RULE_INVERT,
  FRA_DST,
  FRA_FLOW,
  FRA_FWMARK,
  FRA_FWMASK,
  FRA_IIFNAME,
  FRA_MAX_KNOWN,
  FRA_OIFNAME,
  FRA_PAD,
  FRA_PRIORITY,
  FRA_PROTOCOL,
  FRA_SRC,
  FRA_SUPPRESS_PREFIXLEN,
  FRA_TABLE,
  NLM_F_ACK,
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  NLM_F_REQUEST,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSGERR_ATTR_MSG,
  NLMSGERR_ATTR_OFFS,
  RTM_DELRULE,
  RTM_NEWRULE,
} from "./constants.ts";
import { InvalidRuleError, NetlinkDecodeError } from "./errors.ts";
import type { Rule, RuleSpec } from "./rule.ts";
import {
  decodeAck,
  decodeRuleMessage,
  decodeRules,
  encodeDumpRequest,
  encodeRuleMessage,
  readMessages,
  ruleMessageLength,
  writeRuleMessage,
} from "./rule_codec.ts";

const HEADER = { type: RTM_NEWRULE, flags: NLM_F_REQUEST | NLM_F_ACK, seq: 1 };

const RULE: Rule = {
  family: 4,
  src: "10.1.2.4",
  srcLen: 32,
  table: 1000,
  priority: 1000,
  protocol: 99,
};

/** One netlink attribute, padded to 4 bytes. */
function attr(type: number, value: Uint8Array | number[]): Uint8Array {
  const data = value instanceof Uint8Array ? value : Uint8Array.from(value);
  const out = new Uint8Array((4 + data.length + 3) & ~3);
  const view = new DataView(out.buffer);
  view.setUint16(0, 4 + data.length, true);
  view.setUint16(2, type, true);
  out.set(data, 4);
  return out;
}

function u32(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value, true);
  return out;
}

/** A netlink message: header, then the payload parts. */
function message(type: number, flags: number, ...parts: Uint8Array[]): Uint8Array {
  const length = 16 + parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(length);
  const view = new DataView(out.buffer);
  view.setUint32(0, length, true);
  view.setUint16(4, type, true);
  view.setUint16(6, flags, true);
  view.setUint32(8, 5, true);
  let at = 16;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** A fib_rule_hdr. */
function fibHeader(
  fields: {
    family?: number;
    dstLen?: number;
    srcLen?: number;
    tos?: number;
    table?: number;
    action?: number;
    flags?: number;
  } = {},
): Uint8Array {
  const out = new Uint8Array(12);
  out[0] = fields.family ?? 2;
  out[1] = fields.dstLen ?? 0;
  out[2] = fields.srcLen ?? 0;
  out[3] = fields.tos ?? 0;
  out[4] = fields.table ?? 0;
  out[7] = fields.action ?? 1;
  new DataView(out.buffer).setUint32(8, fields.flags ?? 0, true);
  return out;
}

/** An RTM_NEWRULE message of the header and attributes, decoded. */
function decode(header: Uint8Array, ...attrs: Uint8Array[]) {
  const bytes = message(RTM_NEWRULE, 0, header, ...attrs);
  return decodeRuleMessage(bytes, readMessages(bytes)[0]!);
}

function decodeFails(expected: string, header: Uint8Array, ...attrs: Uint8Array[]): void {
  assert.throws(
    () => decode(header, ...attrs),
    (error: unknown) => error instanceof NetlinkDecodeError && error.message === expected,
    expected,
  );
}

const TABLE_100 = attr(FRA_TABLE, u32(100));
const V4 = (...octets: number[]) => Uint8Array.from(octets);

Deno.test("encodeRuleMessage() refuses each invalid field with a message naming field and value", () => {
  const cases: [Partial<RuleSpec> & Record<string, unknown>, string, string][] = [
    [{ family: 5 as 4 }, "family", 'Invalid family "5": expected 4 or 6'],
    [
      { table: "12" as unknown as number },
      "table",
      'Invalid table "12": expected an integer 0..4294967295',
    ],
    [{ dstLen: 33 }, "dstLen", 'Invalid dstLen "33": expected an integer 0..32'],
    [{ action: 256 }, "action", 'Invalid action "256": expected an integer 0..255'],
    [{ tos: 256 }, "tos", 'Invalid tos "256": expected an integer 0..255'],
    [{ flags: -1 }, "flags", 'Invalid flags "-1": expected an integer 0..4294967295'],
    [
      { fwmark: 2 ** 32 },
      "fwmark",
      'Invalid fwmark "4294967296": expected an integer 0..4294967295',
    ],
    [{ fwmask: 0.5 }, "fwmask", 'Invalid fwmask "0.5": expected an integer 0..4294967295'],
    [{ goto: -2 }, "goto", 'Invalid goto "-2": expected an integer 0..4294967295'],
    [
      { iif: "sixteen-bytes-xx" },
      "iif",
      'Invalid iif "sixteen-bytes-xx": expected an interface name of at most 15 bytes',
    ],
    [{ oif: "a\0b" }, "oif", 'Invalid oif "a\0b": expected an interface name of at most 15 bytes'],
    [
      { extra: new Uint8Array(6) },
      "extra",
      'Invalid extra attributes of length "6": expected a multiple of 4',
    ],
    [{ src: "10.1.2" }, "src", 'Invalid src "10.1.2": expected an IPv4 address'],
    [{ dstLen: 8 }, "dst", 'Invalid dst "undefined": expected an IPv4 address'],
    [{ dstLen: 8, dst: "fd00::" }, "dst", 'Invalid dst "fd00::": expected an IPv4 address'],
  ];
  for (const [change, field, text] of cases) {
    assert.throws(
      () => encodeRuleMessage({ ...RULE, ...change }, HEADER),
      (error: unknown) =>
        error instanceof InvalidRuleError && error.field === field && error.message === text,
      text,
    );
  }
  // The longest name that fits: 15 bytes and its NUL.
  const longest = encodeRuleMessage({ ...RULE, iif: "fifteen-bytes-x" }, HEADER);
  assert.equal(decodeRules(longest)[0]?.iif, "fifteen-bytes-x");
});

Deno.test("writeRuleMessage() refuses a buffer too small, at any offset, and returns the end", () => {
  const length = ruleMessageLength(RULE);
  const text = `Buffer too small for a rule message of "${length}" bytes`;
  for (const [size, offset] of [[length - 1, 0], [length, 4], [length + 3, 4]]) {
    assert.throws(
      () => writeRuleMessage(new Uint8Array(size!), offset!, RULE, HEADER),
      (error: unknown) => error instanceof RangeError && error.message === text,
      `${size} bytes at ${offset}`,
    );
  }
  // Two rules back to back, the second with raw extra attributes, in one buffer.
  const second: RuleSpec = { ...RULE, src: "10.1.2.5", extra: attr(FRA_FLOW, u32(7)) };
  const bytes = new Uint8Array(length + ruleMessageLength(second));
  const end = writeRuleMessage(bytes, 0, RULE, HEADER);
  assert.equal(end, length);
  assert.equal(writeRuleMessage(bytes, end, second, HEADER), bytes.length);
  const rules = decodeRules(bytes);
  assert.deepEqual(rules.map((r) => [r.src, r.extra.length, r.plain]), [
    ["10.1.2.4", 0, true],
    ["10.1.2.5", 8, false],
  ]);
});

Deno.test("writeRuleMessage() clears the padding of interface names in a reused buffer", () => {
  const rule: RuleSpec = { ...RULE, iif: "eth0", oif: "veth-a" };
  const bytes = new Uint8Array(ruleMessageLength(rule)).fill(0xff);
  writeRuleMessage(bytes, 0, rule, HEADER);
  const [decoded] = decodeRules(bytes);
  assert.deepEqual([decoded?.iif, decoded?.oif], ["eth0", "veth-a"]);
});

Deno.test("encodeRuleMessage() round-trips interface names and a mark mask alone", () => {
  for (
    const change of [
      { iif: "eth0" },
      { oif: "eth0" },
      { iif: "lo", oif: "wg-tunnel-1" },
      { fwmask: 0xff },
      { fwmark: 0x10 },
      { fwmark: 0x10, fwmask: 0xf0 },
    ]
  ) {
    const rule = { ...RULE, ...change };
    const bytes = encodeRuleMessage(rule, HEADER);
    assert.equal(bytes.length, ruleMessageLength(rule));
    const [decoded] = decodeRules(bytes);
    assert.deepEqual(
      [decoded?.iif, decoded?.oif, decoded?.fwmark, decoded?.fwmask, decoded?.plain],
      [rule.iif ?? "", rule.oif ?? "", rule.fwmark ?? 0, rule.fwmask ?? 0, false],
      JSON.stringify(change),
    );
  }
});

Deno.test("request headers carry the sender port id in host order", () => {
  const pid = 0x01020304;
  const rule = encodeRuleMessage(RULE, { ...HEADER, pid });
  const dump = encodeDumpRequest({ seq: 1, pid });
  for (const bytes of [rule, dump]) {
    assert.equal(readMessages(bytes)[0]?.pid, pid);
    assert.deepEqual([...bytes.subarray(12, 16)], [4, 3, 2, 1]);
  }
});

Deno.test("readMessages() names truncated headers and bad lengths, also past the first message", () => {
  const first = encodeRuleMessage(RULE, HEADER);
  const second = encodeRuleMessage({ ...RULE, src: "10.1.2.5" }, HEADER);
  const bytes = new Uint8Array(first.length + second.length);
  bytes.set(first);
  bytes.set(second, first.length);
  const fails = (length: number, text: string) =>
    assert.throws(
      () => readMessages(bytes, length),
      (error: unknown) => error instanceof NetlinkDecodeError && error.message === text,
      text,
    );
  fails(10, 'Truncated netlink header of "10" bytes at offset 0');
  fails(first.length + 10, `Truncated netlink header of "10" bytes at offset ${first.length}`);
  fails(
    first.length + 20,
    `Invalid netlink message length "${second.length}" at offset ${first.length}`,
  );
  const short = first.slice();
  new DataView(short.buffer).setUint32(0, 15, true);
  assert.throws(() => readMessages(short), {
    message: 'Invalid netlink message length "15" at offset 0',
  });
  // A bare header (NLMSG_DONE of an old kernel) is a whole message.
  const done = message(NLMSG_DONE, 0);
  assert.deepEqual(readMessages(done).map((m) => [m.type, m.length]), [[NLMSG_DONE, 16]]);
  assert.equal(readMessages(bytes).length, 2);
});

Deno.test("decodeRuleMessage() reads the header's table without FRA_TABLE, and interface names without a NUL", () => {
  const rule = decode(
    fibHeader({ table: 77 }),
    attr(FRA_PRIORITY, u32(5)),
    attr(FRA_IIFNAME, new TextEncoder().encode("eth0")),
    attr(FRA_OIFNAME, new TextEncoder().encode("eth1")),
    attr(FRA_PROTOCOL, [4]),
  );
  assert.deepEqual(
    [rule?.table, rule?.priority, rule?.iif, rule?.oif, rule?.protocol],
    [77, 5, "eth0", "eth1", 4],
  );
});

Deno.test("decodeRuleMessage() reports rules from all and to all as the family's any address", () => {
  const v4 = decode(fibHeader({ family: 2 }), TABLE_100);
  const v6 = decode(fibHeader({ family: 10 }), TABLE_100);
  assert.deepEqual([v4?.src, v4?.dst, v4?.family], ["0.0.0.0", "0.0.0.0", 4]);
  assert.deepEqual([v6?.src, v6?.dst, v6?.family], ["::", "::", 6]);
  const to = decode(fibHeader({ dstLen: 8 }), attr(FRA_DST, V4(10, 0, 0, 0)), TABLE_100);
  assert.deepEqual([to?.dst, to?.dstLen, to?.src], ["10.0.0.0", 8, "0.0.0.0"]);
  // The family's full length is a valid prefix (to one host).
  const host = decode(fibHeader({ dstLen: 32 }), attr(FRA_DST, V4(10, 0, 0, 1)), TABLE_100);
  assert.deepEqual([host?.dst, host?.dstLen], ["10.0.0.1", 32]);
});

Deno.test("decodeRuleMessage(): any selector besides the source makes a rule not plain", () => {
  const plain = decode(
    fibHeader({ srcLen: 32, flags: 0x1 }),
    attr(FRA_SRC, V4(10, 1, 1, 1)),
    TABLE_100,
  );
  assert.equal(plain?.plain, true, "FIB_RULE_PERMANENT is no selector");
  const src = attr(FRA_SRC, V4(10, 1, 1, 1));
  const cases: [string, Uint8Array, Uint8Array[]][] = [
    ["to 10.0.0.0/8", fibHeader({ srcLen: 32, dstLen: 8 }), [src, attr(FRA_DST, V4(10, 0, 0, 0))]],
    ["tos 0x10", fibHeader({ srcLen: 32, tos: 0x10 }), [src]],
    ["not", fibHeader({ srcLen: 32, flags: FIB_RULE_INVERT }), [src]],
    ["iif", fibHeader({ srcLen: 32 }), [src, attr(FRA_IIFNAME, [0x61, 0])]],
    ["oif", fibHeader({ srcLen: 32 }), [src, attr(FRA_OIFNAME, [0x61, 0])]],
    ["fwmark", fibHeader({ srcLen: 32 }), [src, attr(FRA_FWMARK, u32(1))]],
    ["fwmask", fibHeader({ srcLen: 32 }), [src, attr(FRA_FWMASK, u32(1))]],
    ["goto", fibHeader({ srcLen: 32, action: 2 }), [src]],
    ["flow", fibHeader({ srcLen: 32 }), [src, attr(FRA_FLOW, u32(1))]],
  ];
  for (const [name, header, attrs] of cases) {
    assert.equal(decode(header, ...attrs, TABLE_100)?.plain, false, name);
  }
});

Deno.test("decodeRuleMessage() keeps the known selectors it does not decode, raw, and skips the rest", () => {
  const flow = attr(FRA_FLOW, u32(1));
  const last = attr(FRA_MAX_KNOWN, u32(2));
  const suppress = attr(FRA_SUPPRESS_PREFIXLEN, u32(8));
  const rule = decode(
    fibHeader(),
    attr(9, u32(3)), // below FRA_FLOW, not decoded: skipped
    flow,
    attr(FRA_PAD, u32(0)),
    attr(FRA_SUPPRESS_PREFIXLEN, u32(0xffffffff)), // unset, sent with every rule
    suppress,
    last,
    attr(FRA_MAX_KNOWN + 1, u32(4)), // newer than this codec: skipped
    attr(99, []), // an empty attribute is valid
    TABLE_100,
  );
  assert.deepEqual([...rule!.extra], [...flow, ...suppress, ...last]);
  assert.equal(rule?.table, 100);
});

Deno.test("decodeRuleMessage() names what is malformed and where", () => {
  const h = 16; // the fib_rule_hdr's offset
  const a = h + 12; // the first attribute's
  decodeFails(`Truncated fib_rule_hdr of "8" bytes at offset ${h}`, new Uint8Array(8));
  decodeFails(`Invalid prefix length "33" for IPv4 at offset ${h}`, fibHeader({ dstLen: 33 }));
  decodeFails(
    `Invalid prefix length "129" for IPv6 at offset ${h}`,
    fibHeader({ family: 10, srcLen: 129 }),
  );
  decodeFails(
    `Truncated attribute header at offset ${a + 8}`,
    fibHeader(),
    TABLE_100,
    new Uint8Array(2),
  );
  const tooShort = attr(FRA_TABLE, u32(1));
  tooShort[0] = 3;
  decodeFails(`Invalid length "3" of attribute "15" at offset ${a}`, fibHeader(), tooShort);
  const tooLong = attr(FRA_TABLE, u32(1));
  tooLong[0] = 9;
  decodeFails(
    `Invalid length "9" of attribute "15" at offset ${a + 8}`,
    fibHeader(),
    TABLE_100,
    tooLong,
  );
  decodeFails(
    `Invalid address length "8" for IPv4 at offset ${a}`,
    fibHeader({ srcLen: 32 }),
    attr(FRA_SRC, new Uint8Array(8)),
  );
  decodeFails(
    `Invalid address length "4" for IPv6 at offset ${a}`,
    fibHeader({ family: 10, dstLen: 8 }),
    attr(FRA_DST, new Uint8Array(4)),
  );
  decodeFails(`Empty attribute "21" at offset ${a}`, fibHeader(), attr(FRA_PROTOCOL, []));
  decodeFails(
    `Attribute "6" of "2" bytes, expected 4 at offset ${a}`,
    fibHeader(),
    attr(FRA_PRIORITY, [1, 0]),
  );
  decodeFails(`Missing source of a /24 rule at offset ${h}`, fibHeader({ srcLen: 24 }), TABLE_100);
  decodeFails(
    `Missing destination of a /8 rule at offset ${h}`,
    fibHeader({ dstLen: 8 }),
    TABLE_100,
  );
});

Deno.test("decodeRules() decodes new and deleted rules of IPv4 and IPv6 and skips everything else", () => {
  const rule = (type: number, family: number, src: number[]) =>
    message(type, 0, fibHeader({ family, srcLen: src.length * 8 }), attr(FRA_SRC, src), TABLE_100);
  const bytes = Uint8Array.from([
    ...rule(RTM_NEWRULE, 2, [10, 0, 0, 1]),
    ...rule(
      RTM_DELRULE,
      10,
      Array.from({ length: 16 }, (_, i) => (i === 0 ? 0xfd : i === 15 ? 2 : 0)),
    ),
    ...rule(RTM_NEWRULE, 128, [10, 0, 0, 3]), // multicast routing
    ...message(NLMSG_DONE, 0, u32(0)),
  ]);
  assert.deepEqual(decodeRules(bytes).map((r) => r.src), ["10.0.0.1", "fd00::2"]);
});

/** An extended ack's attributes. */
function tlvs(...parts: Uint8Array[]): Uint8Array {
  return Uint8Array.from(parts.flatMap((p) => [...p]));
}

function ack(type: number, flags: number, ...payload: Uint8Array[]) {
  const bytes = message(type, flags, ...payload);
  return decodeAck(bytes, readMessages(bytes)[0]!);
}

const text = (s: string) => new TextEncoder().encode(s);

Deno.test("decodeAck() reads a dump's end with or without an error code", () => {
  assert.deepEqual(ack(NLMSG_DONE, 0), { errno: 0, extack: "", attributeOffset: undefined });
  assert.deepEqual(ack(NLMSG_DONE, 0, u32(-22 >>> 0)), {
    errno: 22,
    extack: "",
    attributeOffset: undefined,
  });
  // A dump that failed: the extended ack follows the code directly (no echoed request).
  assert.deepEqual(
    ack(NLMSG_DONE, NLM_F_ACK_TLVS, u32(-1 >>> 0), attr(NLMSGERR_ATTR_MSG, text("no\0"))),
    { errno: 1, extack: "no", attributeOffset: undefined },
  );
});

Deno.test("decodeAck() skips the echoed request of an uncapped error to its extended ack", () => {
  const request = encodeRuleMessage(RULE, HEADER);
  const extack = tlvs(attr(NLMSGERR_ATTR_MSG, text("bad\0")), attr(NLMSGERR_ATTR_OFFS, u32(44)));
  assert.deepEqual(ack(NLMSG_ERROR, NLM_F_ACK_TLVS, u32(-22 >>> 0), request, extack), {
    errno: 22,
    extack: "bad",
    attributeOffset: 44,
  });
  // Capped: only the request's header is echoed.
  assert.deepEqual(
    ack(
      NLMSG_ERROR,
      NLM_F_ACK_TLVS | NLM_F_CAPPED,
      u32(-22 >>> 0),
      request.subarray(0, 16),
      extack,
    ),
    { errno: 22, extack: "bad", attributeOffset: 44 },
  );
  assert.throws(() => ack(NLMSG_ERROR, NLM_F_ACK_TLVS, u32(-22 >>> 0), new Uint8Array(15)), {
    message: "Truncated echoed request header at offset 20",
  });
});

Deno.test("decodeAck() reads a message without its NUL, an offset only from a whole attribute", () => {
  const header = message(NLMSG_ERROR, 0).subarray(0, 16); // an echoed header of 16 bytes
  const read = (...parts: Uint8Array[]) =>
    ack(NLMSG_ERROR, NLM_F_ACK_TLVS | NLM_F_CAPPED, u32(-22 >>> 0), header, tlvs(...parts));
  // The message ends where its attribute ends; the offset attribute that follows is not text.
  assert.deepEqual(
    read(attr(NLMSGERR_ATTR_MSG, text("oops")), attr(NLMSGERR_ATTR_OFFS, u32(0x2c))),
    {
      errno: 22,
      extack: "oops",
      attributeOffset: 0x2c,
    },
  );
  // An offset attribute too short to hold one, a message long enough to: neither is an offset.
  assert.deepEqual(read(attr(NLMSGERR_ATTR_OFFS, [1, 0]), attr(NLMSGERR_ATTR_MSG, text("abcd"))), {
    errno: 22,
    extack: "abcd",
    attributeOffset: undefined,
  });
  // Other attribute types (here the policy, 4) are neither.
  assert.deepEqual(read(attr(4, u32(9))), { errno: 22, extack: "", attributeOffset: undefined });
  const bad = attr(NLMSGERR_ATTR_MSG, text("abcd"));
  bad[0] = 3;
  assert.throws(() => read(bad), {
    message: 'Invalid length "3" of extended-ack attribute "1" at offset 36',
  });
  bad[0] = 9;
  assert.throws(() => read(bad), {
    message: 'Invalid length "9" of extended-ack attribute "1" at offset 36',
  });
});

Deno.test("decodeAck() takes an echoed bare header and an empty attribute as whole", () => {
  const bare = message(NLMSG_ERROR, 0).subarray(0, 16);
  assert.deepEqual(ack(NLMSG_ERROR, NLM_F_ACK_TLVS, u32(-22 >>> 0), bare), {
    errno: 22,
    extack: "",
    attributeOffset: undefined,
  });
  assert.deepEqual(
    ack(
      NLMSG_ERROR,
      NLM_F_ACK_TLVS | NLM_F_CAPPED,
      u32(-22 >>> 0),
      bare,
      tlvs(attr(5, []), attr(NLMSGERR_ATTR_MSG, text("ok\0"))),
    ),
    { errno: 22, extack: "ok", attributeOffset: undefined },
  );
});
