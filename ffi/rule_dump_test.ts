import assert from "node:assert/strict";
import { NLM_F_DUMP_INTR, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, RTM_NEWRULE } from "./constants.ts";
import { NetlinkDecodeError } from "./errors.ts";
import { DumpBuffer, RuleListImage } from "./rule_dump.ts";
import { decodeRules, readMessages } from "./rule_codec.ts";
import { fromHex, KERNEL_DUMP_V4, KERNEL_DUMP_V6 } from "./testdata.ts";

/** Both captured dumps have sequence number 7. */
const SEQ = 7;

/** Receives `datagram` into the buffer as recvfrom would. */
function feed(buffer: DumpBuffer, datagram: Uint8Array, seq = SEQ) {
  buffer.space().set(datagram);
  return buffer.accept(datagram.length, seq);
}

/** `bytes` with every message's sequence number and port id replaced. */
function withHeader(bytes: Uint8Array, seq: number, pid: number): Uint8Array {
  const out = bytes.slice();
  const view = new DataView(out.buffer);
  for (const m of readMessages(out)) {
    view.setUint32(m.offset + 8, seq, true);
    view.setUint32(m.offset + 12, pid, true);
  }
  return out;
}

/** The messages of `bytes` as separate byte arrays. */
function messages(bytes: Uint8Array): Uint8Array[] {
  return readMessages(bytes).map((m) => bytes.subarray(m.offset, m.offset + ((m.length + 3) & ~3)));
}

/** The byte arrays one after the other, in a new array. */
function concat(...parts: Uint8Array[]): Uint8Array {
  return Uint8Array.from(parts.flatMap((p) => [...p]));
}

Deno.test("DumpBuffer decodes the rules of a kernel dump and reports its end", () => {
  const dump = fromHex(KERNEL_DUMP_V4);
  const buffer = new DumpBuffer();
  const progress = feed(buffer, dump);
  assert.deepEqual(progress, {
    end: { errno: 0, extack: "", attributeOffset: undefined },
    interrupted: false,
  });
  assert.deepEqual(buffer.decode(), decodeRules(dump));
  assert.equal(buffer.decode().length, 10);
  assert.deepEqual(buffer.decode(6), []);
});

Deno.test("DumpBuffer: the same rules dumped again under another sequence number and port id compare equal", () => {
  const first = new DumpBuffer();
  feed(first, fromHex(KERNEL_DUMP_V4));
  const image = first.image();
  const again = new DumpBuffer();
  feed(again, withHeader(fromHex(KERNEL_DUMP_V4), 4242, 99), 4242);
  assert.equal(again.sameAs(image), true);
  assert.equal(image.byteLength, again.length);
});

Deno.test("DumpBuffer: one changed byte, one rule more or fewer, and another family compare unequal", () => {
  const dump = fromHex(KERNEL_DUMP_V4);
  const image = (() => {
    const b = new DumpBuffer();
    feed(b, dump);
    return b.image();
  })();
  const parts = messages(dump);
  const changed = dump.slice();
  // The priority of the last own rule (FRA_PRIORITY value of the 8th message) + 1.
  const eighth = readMessages(changed)[7]!;
  const prioAt = eighth.offset + 16 + 12 + 8 + 8 + 8 + 4;
  assert.equal(new DataView(changed.buffer).getUint32(prioAt, true), 1000);
  changed[prioAt]!++;
  const variants = {
    changed,
    fewer: concat(...parts.slice(0, 7), ...parts.slice(8)),
    more: concat(...parts.slice(0, 8), parts[7]!, ...parts.slice(8)),
    ipv6: fromHex(KERNEL_DUMP_V6),
  };
  for (const [name, bytes] of Object.entries(variants)) {
    const b = new DumpBuffer();
    feed(b, bytes);
    assert.equal(b.sameAs(image), false, name);
  }
});

Deno.test("DumpBuffer: a dump split over datagrams gives the image of the whole", () => {
  const dump = fromHex(KERNEL_DUMP_V4);
  const parts = messages(dump);
  const whole = new DumpBuffer();
  feed(whole, dump);
  const split = new DumpBuffer();
  assert.equal(feed(split, concat(...parts.slice(0, 3))).end, undefined);
  assert.equal(feed(split, concat(...parts.slice(3, 9))).end, undefined);
  assert.equal(feed(split, concat(...parts.slice(9))).end?.errno, 0);
  assert.equal(split.sameAs(whole.image()), true);
  assert.deepEqual(split.decode(), whole.decode());
});

Deno.test("DumpBuffer drops replies to earlier requests and keeps the rest in order", () => {
  const dump = fromHex(KERNEL_DUMP_V4);
  const stale = withHeader(fromHex(KERNEL_DUMP_V6), SEQ - 1, 1);
  const staleParts = messages(stale);
  const parts = messages(dump);
  const buffer = new DumpBuffer();
  // A stale IPv6 rule and a stale end before, between and inside the dump's datagrams.
  feed(buffer, concat(staleParts[1]!, ...parts.slice(0, 4), staleParts.at(-1)!));
  feed(buffer, concat(staleParts[2]!, ...parts.slice(4)));
  assert.deepEqual(buffer.decode(), decodeRules(dump));
  const clean = new DumpBuffer();
  feed(clean, dump);
  assert.equal(buffer.sameAs(clean.image()), true);
});

Deno.test("DumpBuffer reports an interrupted dump and an error at its end", () => {
  const dump = fromHex(KERNEL_DUMP_V4);
  const view = new DataView(dump.buffer);
  const first = readMessages(dump)[0]!;
  view.setUint16(first.offset + 6, view.getUint16(first.offset + 6, true) | NLM_F_DUMP_INTR, true);
  assert.equal(feed(new DumpBuffer(), dump).interrupted, true);

  // An NLMSG_ERROR with EPERM (-1) instead of the rules.
  const error = new Uint8Array(36);
  const ev = new DataView(error.buffer);
  ev.setUint32(0, 36, true);
  ev.setUint16(4, NLMSG_ERROR, true);
  ev.setUint32(8, SEQ, true);
  ev.setInt32(16, -1, true);
  assert.equal(feed(new DumpBuffer(), error).end?.errno, 1);
});

Deno.test("DumpBuffer rejects a truncated or impossible message with NetlinkDecodeError", () => {
  const dump = fromHex(KERNEL_DUMP_V4);
  assert.throws(() => feed(new DumpBuffer(), dump.subarray(0, 10)), NetlinkDecodeError);
  const bad = dump.slice();
  new DataView(bad.buffer).setUint32(0, 8, true);
  assert.throws(() => feed(new DumpBuffer(), bad), /Invalid netlink message length "8"/);
});

Deno.test("DumpBuffer grows past its first capacity and keeps every rule", () => {
  const rule = messages(fromHex(KERNEL_DUMP_V4))[6]!; // from 10.1.2.3 lookup 1000 proto 99
  assert.equal(new DataView(rule.buffer, rule.byteOffset).getUint16(4, true), RTM_NEWRULE);
  const datagram = concat(...Array.from({ length: 400 }, () => rule)); // ~27 KB, as the kernel sends
  const buffer = new DumpBuffer();
  for (let i = 0; i < 50; i++) feed(buffer, datagram);
  assert.equal(buffer.length, 50 * datagram.length);
  const rules = buffer.decode();
  assert.equal(rules.length, 20_000);
  assert.equal(rules[19_999]!.src, "10.1.2.3");
  const image = buffer.image();
  buffer.reset();
  for (let i = 0; i < 50; i++) feed(buffer, datagram);
  assert.equal(buffer.sameAs(image), true);
});

Deno.test("RuleListImage refuses a length that is no whole number of words", () => {
  assert.throws(() => new RuleListImage(new Uint8Array(6)), /Invalid image length "6"/);
});

Deno.test("RuleListImage.sameAs() tells a longer or shorter list apart, whatever it starts with", () => {
  const image = new RuleListImage(Uint8Array.from([1, 0, 0, 0, 2, 0, 0, 0]));
  assert.equal(image.sameAs(Int32Array.from([1, 2])), true);
  assert.equal(image.sameAs(Int32Array.from([1, 2, 3])), false);
  assert.equal(image.sameAs(Int32Array.from([1])), false);
  assert.equal(image.sameAs(Int32Array.from([1, 3])), false);
});

/** A message of `type` with the dump's sequence number and `payload`. */
function message(type: number, payload: Uint8Array, seq = SEQ): Uint8Array {
  const out = new Uint8Array(16 + payload.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, out.length, true);
  view.setUint16(4, type, true);
  view.setUint32(8, seq, true);
  out.set(payload, 16);
  return out;
}

Deno.test("DumpBuffer names a truncated or overlong message and its offset in the datagram", () => {
  const [first] = messages(fromHex(KERNEL_DUMP_V4));
  const buffer = new DumpBuffer();
  feed(buffer, first!); // the second datagram starts after it
  const fails = (datagram: Uint8Array, text: string) =>
    assert.throws(
      () => feed(buffer, datagram),
      (error: unknown) => error instanceof NetlinkDecodeError && error.message === text,
      text,
    );
  fails(
    concat(first!, new Uint8Array(10)),
    `Truncated netlink header of "10" bytes at offset ${first!.length}`,
  );
  const overlong = first!.slice();
  new DataView(overlong.buffer).setUint32(0, first!.length + 4, true);
  fails(overlong, `Invalid netlink message length "${first!.length + 4}" at offset 0`);
  // A bare header of the dump's sequence number is a whole (empty) message: the end here.
  const done = message(NLMSG_DONE, new Uint8Array(0));
  assert.deepEqual(feed(new DumpBuffer(), done).end, {
    errno: 0,
    extack: "",
    attributeOffset: undefined,
  });
});

Deno.test("DumpBuffer skips other message types of the dump and pads a partial last message with zeros", () => {
  const parts = messages(fromHex(KERNEL_DUMP_V4));
  const rule = parts[6]!;
  // The rule cut short of its 4-byte padding, as a partial last message of a datagram.
  const unpadded = rule.slice(0, rule.length - 3);
  new DataView(unpadded.buffer).setUint32(0, unpadded.length, true);
  const dirty = new DumpBuffer();
  dirty.space().fill(0xff); // leftovers of an earlier dump
  const progress = feed(dirty, concat(message(NLMSG_NOOP, new Uint8Array(4)), unpadded));
  assert.deepEqual(progress, { end: undefined, interrupted: false });
  const padded = rule.slice();
  padded.fill(0, rule.length - 3);
  new DataView(padded.buffer).setUint32(0, unpadded.length, true);
  const clean = new DumpBuffer();
  feed(clean, padded);
  assert.equal(dirty.length, padded.length);
  assert.equal(dirty.sameAs(clean.image()), true);
});

Deno.test("DumpBuffer.decode() keeps the asked family, and no rule of other families", () => {
  const v4 = messages(fromHex(KERNEL_DUMP_V4)).filter((m) =>
    new DataView(m.buffer, m.byteOffset).getUint16(4, true) === RTM_NEWRULE
  );
  const v6 = messages(fromHex(KERNEL_DUMP_V6)).filter((m) =>
    new DataView(m.buffer, m.byteOffset).getUint16(4, true) === RTM_NEWRULE
  );
  const ipmr = v4[0]!.slice();
  ipmr[16] = 128; // RTNL_FAMILY_IPMR
  const buffer = new DumpBuffer();
  feed(buffer, withHeader(concat(v4[0]!, ipmr, v6[0]!), SEQ, 0));
  assert.deepEqual(buffer.decode().map((r) => r.family), [4, 6]);
  assert.deepEqual(buffer.decode(4).map((r) => r.family), [4]);
  assert.deepEqual(buffer.decode(6).map((r) => r.family), [6]);
});
