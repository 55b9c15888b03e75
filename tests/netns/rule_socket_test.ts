import assert from "node:assert/strict";
import {
  DEFAULT_LIBMNL_PATH,
  type Family,
  LIBMNL_PATH_ENV,
  LibmnlLoadError,
  type Rule,
  RuleSocket,
} from "../../ffi/mod.ts";
import { Netns } from "../support/netns.ts";
import { hostRules } from "../support/rules.ts";
import { ipRuleRows, ruleRow } from "./ip_rules.ts";

const PROTOCOL = 99;

/** Rule i of a test's set: tables cross the 255 boundary of the header byte. */
const testFields = (i: number) => ({
  table: 100 + (i % 300),
  priority: 1000 + (i % 50),
  protocol: PROTOCOL,
});
const v4Rules = (count: number, base: Partial<Rule> = {}) =>
  hostRules("10.20.0.0", count, (i) => ({ ...testFields(i), ...base }));
const v6Rules = (count: number) => hostRules("fd00:20::", count, testFields);

function errorCodes(results: { error?: { code: string } }[]): (string | undefined)[] {
  return results.map((r) => r.error?.code);
}

async function addDumpDelete(family: Family, rules: Rule[]): Promise<void> {
  await using ns = await Netns.create();
  using socket = ns.enter(() => RuleSocket.open());
  const before = await ipRuleRows(ns, family);

  const added = await socket.addRules(rules);
  assert.deepEqual(errorCodes(added), rules.map(() => undefined));

  const dump = await socket.listRules({ family });
  const ours = dump.filter((r) => r.protocol === PROTOCOL);
  assert.equal(ours.length, rules.length);
  assert.deepEqual(dump.map(ruleRow), await ipRuleRows(ns, family));
  const key = (r: Rule) => `${r.src}/${r.srcLen} ${r.table} ${r.priority}`;
  assert.deepEqual(new Set(ours.map(key)), new Set(rules.map(key)));
  assert.ok(ours.every((r) => r.plain && r.family === family));

  const deleted = await socket.deleteRules(ours);
  assert.deepEqual(errorCodes(deleted), ours.map(() => undefined));
  assert.deepEqual(await ipRuleRows(ns, family), before);
}

Deno.test("addRules() adds 1,000 IPv4 rules that listRules() and ip -d rule show report field by field", async () => {
  await addDumpDelete(4, v4Rules(1000));
});

Deno.test("addRules() adds 1,000 IPv6 rules that listRules() and ip -6 -d rule show report field by field", async () => {
  await addDumpDelete(6, v6Rules(1000));
});

Deno.test("listRules() returns the rules of both families, the kernel's defaults included", async () => {
  await using ns = await Netns.create();
  using socket = ns.enter(() => RuleSocket.open());
  await socket.addRules([...v4Rules(3), ...v6Rules(2)]);
  const dump = await socket.listRules();
  assert.deepEqual(dump.filter((r) => r.family === 4).map(ruleRow), await ipRuleRows(ns, 4));
  assert.deepEqual(dump.filter((r) => r.family === 6).map(ruleRow), await ipRuleRows(ns, 6));
  const defaults = dump.filter((r) => r.protocol === 2).map((r) =>
    `${r.family} ${r.priority} ${r.table}`
  );
  assert.deepEqual(defaults, ["4 0 255", "4 32766 254", "4 32767 253", "6 0 255", "6 32766 254"]);
});

Deno.test("addRules() writes tables above 255 and at the 255 boundary", async () => {
  await using ns = await Netns.create();
  using socket = ns.enter(() => RuleSocket.open());
  const tables = [1, 252, 253, 254, 255, 256, 1000, 65535, 65536, 4294967295];
  const rules = v4Rules(tables.length).map((r, i) => ({ ...r, table: tables[i]! }));
  assert.deepEqual(errorCodes(await socket.addRules(rules)), rules.map(() => undefined));
  const ip = (await ipRuleRows(ns, 4)).filter((r) => r.protocol === PROTOCOL);
  assert.deepEqual(ip.map((r) => [r.src, r.table]), rules.map((r) => [r.src, r.table]));
  const dump = (await socket.listRules({ family: 4 })).filter((r) => r.protocol === PROTOCOL);
  assert.deepEqual(dump.map((r) => r.table), tables);
  assert.deepEqual(errorCodes(await socket.deleteRules(rules)), rules.map(() => undefined));
  assert.deepEqual((await ipRuleRows(ns, 4)).filter((r) => r.protocol === PROTOCOL), []);
});

Deno.test("addRules() writes priorities 1 and 32765", async () => {
  await using ns = await Netns.create();
  using socket = ns.enter(() => RuleSocket.open());
  const rules = [...v4Rules(2), ...v6Rules(2)].map((r, i) => ({
    ...r,
    priority: i % 2 === 0 ? 1 : 32765,
  }));
  assert.deepEqual(errorCodes(await socket.addRules(rules)), rules.map(() => undefined));
  const text = await ns.ip(["-N", "-d", "rule", "show"]) +
    await ns.ip(["-6", "-N", "-d", "rule", "show"]);
  assert.match(text, /^1:\s+from 10\.20\.0\.0 lookup 100 proto 99$/m);
  assert.match(text, /^32765:\s+from 10\.20\.0\.1 lookup 101 proto 99$/m);
  assert.match(text, /^1:\s+from fd00:20:: lookup 100 proto 99$/m);
  assert.match(text, /^32765:\s+from fd00:20::1 lookup 101 proto 99$/m);
  assert.deepEqual(errorCodes(await socket.deleteRules(rules)), rules.map(() => undefined));
  assert.doesNotMatch(await ns.ip(["-N", "-d", "rule", "show"]), /proto 99/);
});

Deno.test("addRules() reports EEXIST on the duplicate of a batch only and adds the rest", async () => {
  await using ns = await Netns.create();
  using socket = ns.enter(() => RuleSocket.open());
  const [a, b, c] = v4Rules(3) as [Rule, Rule, Rule];
  const results = await socket.addRules([a, b, a, c]);
  assert.deepEqual(errorCodes(results), [undefined, undefined, "EEXIST", undefined]);
  const error = results[2]!.error!;
  assert.deepEqual([error.op, error.errno, error.rule], ["add", 17, a]);
  assert.equal(typeof error.seq, "number");
  const ours = (await ipRuleRows(ns, 4)).filter((r) => r.protocol === PROTOCOL);
  assert.deepEqual(ours.map((r) => r.src).sort(), [a.src, b.src, c.src].sort());
});

Deno.test("deleteRules() reports ENOENT on the missing rule of a batch only and deletes the rest", async () => {
  await using ns = await Netns.create();
  using socket = ns.enter(() => RuleSocket.open());
  const [a, b, missing] = v4Rules(3) as [Rule, Rule, Rule];
  await socket.addRules([a, b]);
  const results = await socket.deleteRules([a, missing, b]);
  assert.deepEqual(errorCodes(results), [undefined, "ENOENT", undefined]);
  assert.deepEqual([results[1]!.error!.op, results[1]!.error!.rule], ["delete", missing]);
  assert.deepEqual((await ipRuleRows(ns, 4)).filter((r) => r.protocol === PROTOCOL), []);
});

Deno.test("addRules() reports an invalid rule as EINVAL and applies the rest of the batch", async () => {
  await using ns = await Netns.create();
  using socket = ns.enter(() => RuleSocket.open());
  const [a, b] = v4Rules(2) as [Rule, Rule];
  const results = await socket.addRules([a, { ...b, src: "10.20.300.1" }, b]);
  assert.deepEqual(errorCodes(results), [undefined, "EINVAL", undefined]);
  assert.match(results[1]!.error!.message, /Invalid src "10\.20\.300\.1"/);
  assert.equal((await ipRuleRows(ns, 4)).filter((r) => r.protocol === PROTOCOL).length, 2);
});

Deno.test("deleteRules() leaves foreign rules untouched", async () => {
  await using ns = await Netns.create();
  using socket = ns.enter(() => RuleSocket.open());
  const ours = v4Rules(20);
  const first = ours[0]!;
  const foreign = [
    // same source, table and priority as ours, but no protocol / another protocol
    `rule add from ${first.src} lookup ${first.table} priority ${first.priority}`,
    `rule add from ${first.src} lookup ${first.table} priority ${first.priority} protocol 42`,
    // other selectors
    `rule add from ${first.src} iif lo lookup ${first.table} priority ${first.priority} protocol 0`,
    `rule add from ${first.src} fwmark 0x10/0xff lookup ${first.table} priority ${first.priority}`,
    `rule add from ${first.src}/24 lookup ${first.table} priority ${first.priority} protocol 42`,
    `rule add to ${first.src} lookup ${first.table} priority ${first.priority}`,
    `rule add from ${first.src} prohibit priority ${first.priority}`,
  ].join("\n");
  await ns.ip(["-batch", "-"], { stdin: foreign });
  const before = await ipRuleRows(ns, 4);
  assert.deepEqual(errorCodes(await socket.addRules(ours)), ours.map(() => undefined));
  assert.deepEqual(errorCodes(await socket.deleteRules(ours)), ours.map(() => undefined));
  assert.deepEqual(await ipRuleRows(ns, 4), before);
  // Deleting again finds nothing of ours, and still leaves the foreign rules alone.
  assert.deepEqual(errorCodes(await socket.deleteRules(ours)), ours.map(() => "ENOENT"));
  assert.deepEqual(await ipRuleRows(ns, 4), before);
  const dump = await socket.listRules({ family: 4 });
  // iif, fwmark, to and prohibit are not plain; from X/24 is.
  assert.equal(dump.filter((r) => !r.plain).length, 4);
});

Deno.test("deleteRules() of a dumped rule matches its other selectors too", async () => {
  await using ns = await Netns.create();
  using socket = ns.enter(() => RuleSocket.open());
  const r = v4Rules(1)[0]!;
  // Two rules with our protocol, same source/table/priority: plain first, then one with iif.
  await ns.ip(["-batch", "-"], {
    stdin:
      `rule add from ${r.src} lookup ${r.table} priority ${r.priority} protocol ${PROTOCOL}\n` +
      `rule add from ${r.src} iif lo lookup ${r.table} priority ${r.priority} protocol ${PROTOCOL}\n`,
  });
  const withIif = (await socket.listRules({ family: 4 })).find((k) => k.iif === "lo");
  assert.ok(withIif);
  assert.deepEqual(errorCodes(await socket.deleteRules([withIif])), [undefined]);
  const left = (await socket.listRules({ family: 4 })).filter((k) => k.protocol === PROTOCOL);
  assert.deepEqual(left.map((k) => [k.src, k.iif, k.plain]), [[r.src, "", true]]);
});

Deno.test("listRulesIfChanged() finds an unchanged list unchanged, and any change of it, from any socket", async () => {
  await using ns = await Netns.create();
  using socket = ns.enter(() => RuleSocket.open());
  using other = ns.enter(() => RuleSocket.open());
  const ours = [...v4Rules(1500), ...v6Rules(500)]; // a dump of several datagrams
  assert.deepEqual(errorCodes(await socket.addRules(ours)), ours.map(() => undefined));

  const first = await socket.listRulesIfChanged();
  assert.ok(first);
  assert.deepEqual(first.rules, await socket.listRules());
  assert.deepEqual(
    first.rules.filter((r) => r.family === 4).map(ruleRow),
    await ipRuleRows(ns, 4),
  );
  // Unchanged, though every dump has its own sequence number: nothing decoded.
  assert.equal(await socket.listRulesIfChanged(first.image), undefined);
  assert.equal(await other.listRulesIfChanged(first.image), undefined);

  const one = ours[700]!;
  const changes: [string, () => Promise<unknown>][] = [
    ["our rule deleted", () => other.deleteRules([one])],
    ["our rule back", () => other.addRules([one])],
    [
      "foreign rule added",
      () => ns.ip(["rule", "add", "from", one.src, "lookup", "7", "priority", "5"]),
    ],
    [
      "foreign rule deleted",
      () => ns.ip(["rule", "del", "from", one.src, "lookup", "7", "priority", "5"]),
    ],
    ["IPv6 rule re-tabled", async () => {
      const v6 = ours[1800]!;
      await other.deleteRules([v6]);
      await other.addRules([{ ...v6, table: v6.table + 1 }]);
    }],
  ];
  let image = first.image;
  for (const [change, apply] of changes) {
    await apply();
    const after = await socket.listRulesIfChanged(image);
    assert.ok(after, `${change}: reported unchanged`);
    assert.deepEqual(after.rules, await socket.listRules(), change);
    assert.equal(await socket.listRulesIfChanged(after.image), undefined, `${change}: twice`);
    image = after.image;
  }
});

Deno.test("RuleSocket.close() is idempotent and later calls fail", async () => {
  await using ns = await Netns.create();
  const socket = ns.enter(() => RuleSocket.open());
  socket.close();
  socket.close();
  await assert.rejects(socket.listRules(), Deno.errors.BadResource);
});

Deno.test("RuleSocket.open() loads libmnl from the option, IPRULE_LIBMNL_PATH or the Debian path", async () => {
  await using ns = await Netns.create();
  assert.throws(
    () => RuleSocket.open({ libraryPath: "/nonexistent/libmnl.so.0" }),
    (error: unknown) =>
      error instanceof LibmnlLoadError && error.path === "/nonexistent/libmnl.so.0" &&
      /"libmnl0"/.test(error.message),
  );
  Deno.env.set(LIBMNL_PATH_ENV, "/nonexistent/from-env/libmnl.so.0");
  try {
    assert.throws(() => ns.enter(() => RuleSocket.open()), LibmnlLoadError);
  } finally {
    Deno.env.delete(LIBMNL_PATH_ENV);
  }
  using socket = ns.enter(() => RuleSocket.open({ libraryPath: DEFAULT_LIBMNL_PATH }));
  assert.ok((await socket.listRules()).length >= 3);
});
