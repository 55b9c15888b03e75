import assert from "node:assert/strict";
import {
  FIB_RULE_INVERT,
  FR_ACT_GOTO,
  FR_ACT_PROHIBIT,
  NLM_F_ACK,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REQUEST,
  NLMSG_DONE,
  NLMSG_ERROR,
  RTM_DELRULE,
  RTM_NEWRULE,
} from "./constants.ts";
import { InvalidRuleError, NetlinkDecodeError } from "./errors.ts";
import { formatRule, type KernelRule, type Rule } from "./rule.ts";
import {
  decodeAck,
  decodeRuleMessage,
  decodeRules,
  encodeDumpRequest,
  encodeRuleMessage,
  type MessageHeader,
  readMessages,
} from "./rule_codec.ts";
import { fromHex, KERNEL_DUMP_V4, KERNEL_DUMP_V6 } from "./testdata.ts";

function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const ADD_FLAGS = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;

// What iproute2 6.1 sent (strace) for `ip rule add from 10.1.2.4 lookup 1000 priority 1000 protocol 99`.
const IPROUTE2_ADD_V4 = "3c000000 2000 0506 4d35086b 00000000" +
  "02002000 00000001 00000000 08000200 0a010204 08000f00 e8030000 08000600 e8030000 05001500 63000000";
// … and for `ip -6 rule add from 2001:db8::5 lookup 300 priority 5 proto 42`.
const IPROUTE2_ADD_V6 = "48000000 2000 0506 4d35086b 00000000" +
  "0a008000 00000001 00000000 14000200 20010db8000000000000000000000005 08000f00 2c010000" +
  "08000600 05000000 05001500 2a000000";

// Acks with NETLINK_CAP_ACK and NETLINK_EXT_ACK on: EEXIST on an add, and EINVAL with the
// kernel's message for an IPv4 rule whose FRA_SRC has 16 bytes, and a plain success.
const KERNEL_ACK_EEXIST =
  "2400000002000001090000003c530000efffffff3c000000200005060900000000000000";
const KERNEL_ACK_EXTACK =
  "40000000020000030b0000003c530000eaffffff48000000200005060b000000000000001b000100496e76616c696420736f7572636520616464726573730000";
const KERNEL_ACK_OK = "24000000020000010c0000003c530000000000003c000000200005060c00000000000000";

const PLAIN_V4: Rule = {
  family: 4,
  src: "10.1.2.4",
  srcLen: 32,
  table: 1000,
  priority: 1000,
  protocol: 99,
};

/** An add request for `rule`, as the agent sends it (NLM_F_CREATE | NLM_F_EXCL). */
function encodeAdd(rule: Parameters<typeof encodeRuleMessage>[0], seq = 1): Uint8Array {
  return encodeRuleMessage(rule, { type: RTM_NEWRULE, flags: ADD_FLAGS, seq });
}

function onlyMessage(bytes: Uint8Array): MessageHeader {
  const messages = readMessages(bytes);
  assert.equal(messages.length, 1);
  return messages[0]!;
}

function decodeOne(bytes: Uint8Array): KernelRule {
  const rule = decodeRuleMessage(bytes, onlyMessage(bytes));
  assert.ok(rule);
  return rule;
}

Deno.test("encodeRuleMessage() writes the bytes iproute2 sends for an IPv4 rule", () => {
  const bytes = encodeAdd(PLAIN_V4, 1795700045);
  assert.equal(toHex(bytes), toHex(fromHex(IPROUTE2_ADD_V4)));
});

Deno.test("encodeRuleMessage() writes the bytes iproute2 sends for an IPv6 rule", () => {
  const rule: Rule = {
    family: 6,
    src: "2001:db8::5",
    srcLen: 128,
    table: 300,
    priority: 5,
    protocol: 42,
  };
  const bytes = encodeAdd(rule, 1795700045);
  assert.equal(toHex(bytes), toHex(fromHex(IPROUTE2_ADD_V6)));
});

Deno.test("encodeRuleMessage() writes FRA_TABLE for tables above 255 and zero in the header byte", () => {
  for (const table of [256, 1000, 65536, 4294967295]) {
    const bytes = encodeAdd({ ...PLAIN_V4, table });
    const view = new DataView(bytes.buffer);
    assert.equal(bytes[16 + 4], 0, `header byte for ${table}`);
    assert.equal(view.getUint16(38, true), 15); // FRA_TABLE after FRA_SRC
    assert.equal(view.getUint32(40, true), table);
    assert.equal(decodeOne(bytes).table, table);
  }
});

Deno.test("encodeRuleMessage() writes tables up to 255 in the header byte and in FRA_TABLE", () => {
  for (const table of [1, 252, 253, 254, 255]) {
    const bytes = encodeAdd({ ...PLAIN_V4, table });
    assert.equal(bytes[16 + 4], table);
    assert.equal(new DataView(bytes.buffer).getUint32(40, true), table);
    assert.equal(decodeOne(bytes).table, table);
  }
});

Deno.test("encodeRuleMessage() sends priority, table and protocol on delete, without NLM_F_EXCL", () => {
  const bytes = encodeRuleMessage(PLAIN_V4, {
    type: RTM_DELRULE,
    flags: NLM_F_REQUEST | NLM_F_ACK,
    seq: 42,
  });
  const header = onlyMessage(bytes);
  assert.deepEqual(header, { offset: 0, length: 60, type: RTM_DELRULE, flags: 5, seq: 42, pid: 0 });
  const rule = decodeOne(bytes);
  assert.deepEqual([rule.src, rule.priority, rule.table, rule.protocol], [
    "10.1.2.4",
    1000,
    1000,
    99,
  ]);
});

Deno.test("encodeRuleMessage() omits FRA_SRC for a rule from all", () => {
  const bytes = encodeAdd({ ...PLAIN_V4, src: "", srcLen: 0 });
  assert.equal(bytes.length, 52);
  const rule = decodeOne(bytes);
  assert.equal(rule.srcLen, 0);
  assert.equal(rule.src, "0.0.0.0");
  assert.equal(formatRule(rule), "from all lookup 1000 priority 1000 protocol 99");
});

Deno.test("encodeRuleMessage() round-trips priorities 0, 1, 32765 and 2^32-1", () => {
  for (const priority of [0, 1, 32765, 4294967295]) {
    const bytes = encodeAdd({ ...PLAIN_V4, priority });
    assert.equal(decodeOne(bytes).priority, priority);
  }
});

Deno.test("encodeRuleMessage() round-trips every selector of a kernel rule", () => {
  const rules = decodeRules(fromHex(KERNEL_DUMP_V4));
  for (const rule of rules) {
    const bytes = encodeRuleMessage(rule, {
      type: RTM_DELRULE,
      flags: NLM_F_REQUEST | NLM_F_ACK,
      seq: 3,
    });
    const again = decodeOne(bytes);
    // The kernel reports the header's table byte as 252 for large tables; ours is 0: same rule.
    assert.deepEqual(again, rule, formatRule(rule));
  }
});

Deno.test("encodeRuleMessage() round-trips IPv6 sources and prefixes", () => {
  for (
    const [src, srcLen] of [["fd00::1", 128], ["2001:db8::", 32], ["::", 0], [
      "::ffff:102:304",
      128,
    ]] as const
  ) {
    const rule: Rule = { family: 6, src, srcLen, table: 4000, priority: 10, protocol: 200 };
    const decoded = decodeOne(
      encodeAdd(rule),
    );
    assert.deepEqual([decoded.src, decoded.srcLen, decoded.plain], [src, srcLen, true]);
  }
});

Deno.test("encodeRuleMessage() rejects invalid rules with InvalidRuleError naming the field", () => {
  const cases: [Partial<Rule> & Record<string, unknown>, string][] = [
    [{ family: 5 as 4 }, "family"],
    [{ src: "10.1.2" }, "src"],
    [{ src: "fd00::1" }, "src"],
    [{ srcLen: 33 }, "srcLen"],
    [{ srcLen: -1 }, "srcLen"],
    [{ table: 4294967296 }, "table"],
    [{ table: 1.5 }, "table"],
    [{ priority: -1 }, "priority"],
    [{ protocol: 256 }, "protocol"],
    [{ iif: "a-very-long-interface-name" }, "iif"],
  ];
  for (const [change, field] of cases) {
    assert.throws(
      () => encodeAdd({ ...PLAIN_V4, ...change }),
      (error: unknown) => error instanceof InvalidRuleError && error.field === field,
      field,
    );
  }
});

Deno.test("decodeRules() decodes a kernel IPv4 dump field by field", () => {
  const rules = decodeRules(fromHex(KERNEL_DUMP_V4));
  assert.deepEqual(rules.map(formatRule), [
    "from all lookup 255 priority 0 protocol 2",
    "from 10.0.0.0/8 fwmark 0x10/0xff iif lo lookup 100 priority 7 protocol 0",
    "not from 1.2.3.4 to 5.6.7.0/24 tos 0x10 (other selectors) lookup 0 priority 9 protocol 0",
    "from 1.1.1.1 goto 1000 priority 11 protocol 0",
    "from 1.1.1.2 prohibit priority 12 protocol 0",
    "from 1.1.1.3 (other selectors) lookup 254 priority 13 protocol 0",
    "from 10.1.2.3 lookup 1000 priority 1000 protocol 99",
    "from 10.1.2.4 lookup 1000 priority 1000 protocol 99",
    "from all lookup 254 priority 32766 protocol 2",
    "from all lookup 253 priority 32767 protocol 2",
  ]);
  assert.deepEqual(rules.map((r) => r.plain), [
    true,
    false,
    false,
    false,
    false,
    false,
    true,
    true,
    true,
    true,
  ]);
  const [local, marked, inverted, goto, prohibit] = rules;
  assert.deepEqual(
    [local!.family, local!.src, local!.srcLen, local!.table, local!.priority, local!.protocol],
    [4, "0.0.0.0", 0, 255, 0, 2],
  );
  assert.deepEqual([marked!.iif, marked!.fwmark, marked!.fwmask, marked!.extra.length], [
    "lo",
    0x10,
    0xff,
    0,
  ]);
  assert.equal(inverted!.flags & FIB_RULE_INVERT, FIB_RULE_INVERT);
  assert.deepEqual([inverted!.dst, inverted!.dstLen, inverted!.tos], ["5.6.7.0", 24, 0x10]);
  // l3mdev, uidrange, sport, sport mask, dport, ipproto: kept raw, in kernel order.
  assert.equal(inverted!.extra.length, 8 + 12 + 8 + 8 + 8 + 8);
  assert.deepEqual([goto!.action, goto!.goto], [FR_ACT_GOTO, 1000]);
  assert.equal(prohibit!.action, FR_ACT_PROHIBIT);
});

Deno.test("decodeRules() takes the table from FRA_TABLE when the header byte says 252", () => {
  const bytes = fromHex(KERNEL_DUMP_V4);
  const messages = readMessages(bytes);
  const large = messages[6]!;
  assert.equal(bytes[large.offset + 16 + 4], 252);
  assert.equal(decodeRuleMessage(bytes, large)?.table, 1000);
});

Deno.test("decodeRules() decodes a kernel IPv6 dump", () => {
  const rules = decodeRules(fromHex(KERNEL_DUMP_V6));
  assert.deepEqual(
    rules.map((r) => [r.family, r.src, r.srcLen, r.table, r.priority, r.protocol, r.plain]),
    [
      [6, "::", 0, 255, 0, 2, true],
      [6, "fd00::1", 128, 300, 5, 42, true],
      [6, "2001:db8::5", 128, 300, 5, 42, true],
      [6, "::", 0, 254, 32766, 2, true],
    ],
  );
});

Deno.test("decodeRuleMessage() skips unknown attributes", () => {
  const base = encodeRuleMessage(PLAIN_V4, { type: RTM_NEWRULE, flags: 0, seq: 1 });
  const bytes = new Uint8Array(base.length + 16);
  bytes.set(base);
  // Attribute type 99 (unknown), 8 bytes, then type 200 with a 1-byte value.
  bytes.set(fromHex("08006300deadbeef 05 00 c8 00 01 000000"), base.length);
  new DataView(bytes.buffer).setUint32(0, bytes.length, true);
  const rule = decodeOne(bytes);
  assert.deepEqual([rule.src, rule.table, rule.plain, rule.extra.length], [
    "10.1.2.4",
    1000,
    true,
    0,
  ]);
});

Deno.test("decodeRuleMessage() returns undefined for multicast-routing rule families", () => {
  const bytes = encodeRuleMessage({ ...PLAIN_V4, srcLen: 0 }, {
    type: RTM_NEWRULE,
    flags: 0,
    seq: 1,
  });
  bytes[16] = 128; // RTNL_FAMILY_IPMR
  assert.equal(decodeRuleMessage(bytes, onlyMessage(bytes)), undefined);
});

Deno.test("decodeRuleMessage() rejects malformed messages with NetlinkDecodeError", () => {
  const good = encodeRuleMessage(PLAIN_V4, { type: RTM_NEWRULE, flags: 0, seq: 1 });
  const mutations: [string, (b: Uint8Array, v: DataView) => void][] = [
    ["attribute longer than the message", (_b, v) => v.setUint16(28, 200, true)],
    ["attribute shorter than its header", (_b, v) => v.setUint16(28, 2, true)],
    ["IPv4 source of 8 bytes", (_b, v) => v.setUint16(28, 12, true)],
    ["prefix length 40 for IPv4", (b) => (b[18] = 40)],
    ["missing source of a /32", (b, v) => {
      v.setUint16(30, 99, true); // FRA_SRC becomes an unknown attribute
      b[18] = 32;
    }],
    ["FRA_TABLE of 2 bytes", (_b, v) => {
      v.setUint16(36, 6, true);
    }],
  ];
  for (const [name, mutate] of mutations) {
    const bytes = good.slice();
    mutate(bytes, new DataView(bytes.buffer));
    assert.throws(() => decodeRuleMessage(bytes, onlyMessage(bytes)), NetlinkDecodeError, name);
  }
  const short = good.slice(0, 24);
  new DataView(short.buffer).setUint32(0, 24, true);
  assert.throws(
    () => decodeRuleMessage(short, onlyMessage(short)),
    NetlinkDecodeError,
    "truncated header",
  );
});

Deno.test("readMessages() rejects truncated buffers and impossible lengths", () => {
  const dump = fromHex(KERNEL_DUMP_V6);
  assert.throws(() => readMessages(dump, 10), NetlinkDecodeError);
  assert.throws(() => readMessages(dump, 60), NetlinkDecodeError);
  const bad = dump.slice();
  new DataView(bad.buffer).setUint32(0, 8, true);
  assert.throws(() => readMessages(bad), NetlinkDecodeError);
  assert.equal(readMessages(dump).length, 5);
});

Deno.test("decodeAck() reads errno from a capped ack", () => {
  const bytes = fromHex(KERNEL_ACK_EEXIST);
  const message = onlyMessage(bytes);
  assert.equal(message.type, NLMSG_ERROR);
  assert.equal(message.seq, 9);
  assert.deepEqual(decodeAck(bytes, message), {
    errno: 17,
    extack: "",
    attributeOffset: undefined,
  });
  const ok = fromHex(KERNEL_ACK_OK);
  assert.equal(decodeAck(ok, onlyMessage(ok)).errno, 0);
});

Deno.test("decodeAck() reads the kernel's extended-ack message", () => {
  const bytes = fromHex(KERNEL_ACK_EXTACK);
  const ack = decodeAck(bytes, onlyMessage(bytes));
  assert.deepEqual([ack.errno, ack.extack], [22, "Invalid source address"]);
});

Deno.test("decodeAck() reads the end of a dump", () => {
  const bytes = fromHex(KERNEL_DUMP_V6);
  const done = readMessages(bytes).at(-1)!;
  assert.equal(done.type, NLMSG_DONE);
  assert.equal(decodeAck(bytes, done).errno, 0);
});

Deno.test("encodeDumpRequest() asks for every family or one", () => {
  assert.equal(
    toHex(encodeDumpRequest({ seq: 7 })),
    "1c000000220005030700000000000000000000000000000000000000",
  );
  assert.equal(encodeDumpRequest({ seq: 7, family: 6 })[16], 10);
  assert.equal(encodeDumpRequest({ seq: 7, family: 4 })[16], 2);
});

Deno.test("formatRule() prints the ip rule arguments of a rule", () => {
  assert.equal(formatRule(PLAIN_V4), "from 10.1.2.4 lookup 1000 priority 1000 protocol 99");
  assert.equal(
    formatRule({ family: 6, src: "fd00::", srcLen: 64, table: 7, priority: 1, protocol: 0 }),
    "from fd00::/64 lookup 7 priority 1 protocol 0",
  );
});
