/**
 * Adoption of the original operator's unmarked rules on the kernel: the two kernel behaviours
 * src/agent/adoption.ts relies on, and a reconcile with adoption on, checked with `ip -d rule
 * show`. The original adds its rules without a protocol, as `ip rule add` does, so the tests
 * make its footprint with `ip rule add`.
 */
import assert from "node:assert/strict";
import { RuleSocket } from "../../ffi/mod.ts";
import { Logger } from "../../src/log.ts";
import { RuleReconciler } from "../../src/agent/reconciler.ts";
import { DesiredState } from "../../src/agent/rule_plan.ts";
import { Netns } from "../support/netns.ts";

const PROTO = 201;
const quiet = new Logger({ sink: () => {} });

/** `ip -d rule show` lines without the kernel's own rules. */
async function rules(ns: Netns): Promise<string[]> {
  return (await ns.ip(["-d", "rule", "show"])).split("\n")
    .filter((l) => l !== "" && !l.endsWith("proto kernel"));
}

Deno.test("The kernel adds a marked copy of an identical unmarked rule: its duplicate check compares the protocol", async () => {
  await using ns = await Netns.create();
  using socket = ns.enter(() => RuleSocket.open());
  await ns.ip(["rule", "add", "from", "10.96.1.50", "lookup", "100", "priority", "1000"]);
  const [result] = await socket.addRules([
    { family: 4, src: "10.96.1.50", srcLen: 32, table: 100, priority: 1000, protocol: PROTO },
  ]);
  assert.equal(result?.error, undefined, "NLM_F_EXCL did not refuse the marked copy");
  // The copy comes after the rules of the same priority already there.
  assert.deepEqual(await rules(ns), [
    "1000:\tfrom 10.96.1.50 lookup 100 proto unspec",
    "1000:\tfrom 10.96.1.50 lookup 100 proto 201",
  ]);
});

Deno.test("A delete without protocol removes the first rule of that source, table and priority, whatever its protocol", async () => {
  await using ns = await Netns.create();
  using socket = ns.enter(() => RuleSocket.open());
  const add = (...args: string[]) =>
    ns.ip(["rule", "add", "from", "10.96.1.50", "lookup", "100", "priority", "1000", ...args]);
  await add("protocol", "static");
  await add();
  const unmarked = (await socket.listRules({ family: 4 })).find((r) => r.protocol === 0)!;
  const [result] = await socket.deleteRules([unmarked]);
  assert.equal(result?.error, undefined);
  // The static rule went, not the unmarked one: why adoption never deletes an unmarked rule that
  // another rule with the same source, table and priority precedes.
  assert.deepEqual(await rules(ns), ["1000:\tfrom 10.96.1.50 lookup 100 proto unspec"]);
});

Deno.test("RuleReconciler with adoption takes over the original's rules and leaves every other rule as it was", async () => {
  await using ns = await Netns.create();
  using socket = ns.enter(() => RuleSocket.open());
  const ip = (...args: string[]) => ns.ip(["rule", "add", ...args]);
  await ip("from", "10.96.1.50", "lookup", "100", "priority", "1000"); // a current config's
  await ip("from", "10.96.1.50", "lookup", "50", "priority", "1000"); // leaked: old table
  await ns.ip(["-6", "rule", "add", "from", "fd00::50", "lookup", "100", "priority", "1000"]);
  await ip("from", "10.99.0.1", "lookup", "100", "priority", "1000"); // an admin's
  await ip("from", "10.96.1.51", "lookup", "100", "priority", "1000", "protocol", "static");
  await ip("from", "10.96.1.51", "lookup", "100", "priority", "1000"); // blocked: static first

  const state = new DesiredState({ protocol: PROTO, trackSources: true });
  const config = (serviceIP: string) => ({
    name: serviceIP,
    serviceIP,
    table: 100,
    priority: 1000,
    state: "present" as const,
  });
  for (const ip of ["10.96.1.50", "10.96.1.51", "fd00::50"]) state.update(ip, config(ip));
  const result = await new RuleReconciler(socket, { protocol: PROTO, adoptUnmarked: true })
    .reconcile(state.snapshot(), quiet);

  assert.deepEqual([result.adopted, result.deleted, result.failed], [2, 3, []]);
  assert.deepEqual(await rules(ns), [
    "1000:\tfrom 10.99.0.1 lookup 100 proto unspec",
    "1000:\tfrom 10.96.1.51 lookup 100 proto static",
    "1000:\tfrom 10.96.1.51 lookup 100 proto unspec",
    "1000:\tfrom 10.96.1.50 lookup 100 proto 201",
  ]);
  assert.deepEqual(
    (await ns.ip(["-6", "-d", "rule", "show"])).split("\n").filter((l) => l.includes("fd00")),
    ["1000:\tfrom fd00::50 lookup 100 proto 201"],
  );
  assert.deepEqual(result.plan.adoption?.blocked.map((r) => r.src), ["10.96.1.51"]);
});
