import assert from "node:assert/strict";
import { Logger } from "../log.ts";
import { desiredRules, DesiredState } from "./rule_plan.ts";
import { kernelRule, MemoryTable } from "./test_rules.ts";
import { checkPermission, PermissionError, RuleReconciler } from "./reconciler.ts";

const PROTO = 201;
const EPERM = 1;
const EINVAL = 22;

const quiet = new Logger({ sink: () => {} });
const config = (name: string, serviceIP: string) => ({
  name,
  serviceIP,
  table: 100,
  priority: 1000,
  state: "present" as const,
});
const desired = (...ips: string[]) =>
  desiredRules(ips.map((ip, i) => config(`c${i}`, ip)), { protocol: PROTO });

Deno.test("RuleReconciler adds missing rules and deletes stale own rules", async () => {
  const table = new MemoryTable();
  table.rules.push(
    kernelRule({
      family: 4,
      src: "10.0.0.9",
      srcLen: 32,
      table: 100,
      priority: 1000,
      protocol: PROTO,
    }),
  );
  table.rules.push(
    kernelRule({ family: 4, src: "10.0.0.8", srcLen: 32, table: 100, priority: 1000, protocol: 0 }),
  );
  const result = await new RuleReconciler(table, { protocol: PROTO }).reconcile(
    desired("10.0.0.1", "10.0.0.2"),
    quiet,
  );
  assert.equal(result.converged, true);
  assert.deepEqual([result.desired, result.applied, result.added, result.deleted], [2, 2, 2, 1]);
  assert.deepEqual(table.rules.map((r) => r.src).sort(), ["10.0.0.1", "10.0.0.2", "10.0.0.8"]);
});

Deno.test("RuleReconciler reports a refused rule and still applies the others", async () => {
  const table = new MemoryTable();
  table.refuse.set("10.0.0.2", EINVAL);
  const result = await new RuleReconciler(table, { protocol: PROTO }).reconcile(
    desired("10.0.0.1", "10.0.0.2", "10.0.0.3"),
    quiet,
  );
  assert.equal(result.converged, false);
  assert.deepEqual([result.desired, result.applied], [3, 2]);
  assert.equal(result.failed.length, 1);
  assert.equal(result.failed[0]!.rule, "from 10.0.0.2 lookup 100 priority 1000 protocol 201");
  assert.match(result.failed[0]!.error, /EINVAL/);
  assert.deepEqual(table.rules.map((r) => r.src).sort(), ["10.0.0.1", "10.0.0.3"]);
});

Deno.test("RuleReconciler reports refused configs with the config's name", async () => {
  const result = await new RuleReconciler(new MemoryTable(), { protocol: PROTO }).reconcile(
    desired("10.0.0.1", "224.0.0.1"),
    quiet,
  );
  assert.equal(result.converged, false);
  assert.deepEqual(result.failed, [{
    rule: "from 224.0.0.1 lookup 100 priority 1000",
    error: 'IPRuleConfig "c1": Invalid serviceIP "224.0.0.1": a multicast address is no ' +
      "Service's address",
  }]);
});

Deno.test("RuleReconciler in dry-run plans and changes nothing", async () => {
  const table = new MemoryTable();
  const result = await new RuleReconciler(table, { protocol: PROTO, dryRun: true }).reconcile(
    desired("10.0.0.1"),
    quiet,
  );
  assert.equal(result.plan.add.length, 1);
  assert.equal(result.added, 0);
  assert.deepEqual(table.rules, []);
});

Deno.test("RuleReconciler throws PermissionError on EPERM", async () => {
  const table = new MemoryTable();
  table.refuse.set("10.0.0.1", EPERM);
  await assert.rejects(
    new RuleReconciler(table, { protocol: PROTO }).reconcile(desired("10.0.0.1"), quiet),
    PermissionError,
  );
});

Deno.test("RuleReconciler: while kernel and desired rules stay the same, a reconcile only compares the dump", async () => {
  const table = new MemoryTable();
  const reconciler = new RuleReconciler(table, { protocol: PROTO });
  const state = desired("10.0.0.1", "10.0.0.2");
  const first = await reconciler.reconcile(state, quiet);
  assert.equal(first.added, 2);
  // Rules were added: the list changed, so the next reconcile plans again (and finds nothing).
  const second = await reconciler.reconcile(state, quiet);
  assert.deepEqual([second.added, second.deleted, second.applied, table.unchanged], [0, 0, 2, 0]);
  const third = await reconciler.reconcile(state, quiet);
  assert.equal(third, second);
  assert.equal(table.unchanged, 1);

  // Someone deletes a rule: the list differs, the rule is put back.
  table.rules.shift();
  const repaired = await reconciler.reconcile(state, quiet);
  assert.deepEqual([repaired.added, repaired.applied, table.unchanged], [1, 2, 1]);
  assert.equal(table.rules.length, 2);
  await reconciler.reconcile(state, quiet);
  await reconciler.reconcile(state, quiet);
  assert.equal(table.unchanged, 2);
});

Deno.test("RuleReconciler plans again when the desired rules changed, though the kernel did not", async () => {
  const table = new MemoryTable();
  const reconciler = new RuleReconciler(table, { protocol: PROTO });
  const state = new DesiredState({ protocol: PROTO });
  state.update("a", config("a", "10.0.0.1"));
  await reconciler.reconcile(state.snapshot(), quiet);
  await reconciler.reconcile(state.snapshot(), quiet);
  assert.equal((await reconciler.reconcile(state.snapshot(), quiet)).applied, 1);
  assert.equal(table.unchanged, 1);

  state.update("b", config("b", "10.0.0.2"));
  const grown = await reconciler.reconcile(state.snapshot(), quiet);
  assert.deepEqual([grown.added, grown.applied, table.unchanged], [1, 2, 1]);

  // Another desired set (e.g. the empty one of a drain) never reuses the quiet result.
  await reconciler.reconcile(state.snapshot(), quiet);
  const drained = await reconciler.reconcile(
    new DesiredState({ protocol: PROTO }).snapshot(),
    quiet,
  );
  assert.equal(drained.deleted, 2);
  assert.deepEqual(table.rules, []);
});

Deno.test("RuleReconciler retries a refused rule on every reconcile", async () => {
  const table = new MemoryTable();
  table.refuse.set("10.0.0.2", EINVAL);
  const reconciler = new RuleReconciler(table, { protocol: PROTO });
  const state = desired("10.0.0.1", "10.0.0.2");
  for (let i = 0; i < 3; i++) {
    const result = await reconciler.reconcile(state, quiet);
    assert.deepEqual([result.converged, result.failed.length, result.plan.add.length], [
      false,
      1,
      i === 0 ? 2 : 1,
    ]);
  }
  assert.equal(table.unchanged, 0);
  table.refuse.clear();
  assert.equal((await reconciler.reconcile(state, quiet)).converged, true);
});

Deno.test("RuleReconciler: EEXIST on an add asks for a recheck, and twice in a row is a failure", async () => {
  const EEXIST = 17;
  const table = new MemoryTable();
  const reconciler = new RuleReconciler(table, { protocol: PROTO });
  const state = desired("10.0.0.1", "10.0.0.2");
  table.refuse.set("10.0.0.2", EEXIST); // another rule the kernel treats as the same
  const first = await reconciler.reconcile(state, quiet);
  assert.deepEqual(
    [first.recheck, first.converged, first.applied, first.failed.length],
    [true, false, 1, 0],
  );
  const second = await reconciler.reconcile(state, quiet);
  assert.deepEqual([second.recheck, second.converged, second.applied], [false, false, 1]);
  assert.equal(second.failed[0]?.rule, "from 10.0.0.2 lookup 100 priority 1000 protocol 201");
  assert.match(second.failed[0]?.error ?? "", /EEXIST.*blocks this one/);
  // The blocker goes: the rule is added and the reconcile converges.
  table.refuse.clear();
  const third = await reconciler.reconcile(state, quiet);
  assert.deepEqual([third.recheck, third.converged, third.applied], [false, true, 2]);
});

Deno.test("RuleReconciler.restore() puts back deleted rules without a dump", async () => {
  const table = new MemoryTable();
  const reconciler = new RuleReconciler(table, { protocol: PROTO });
  const rules = desired("10.0.0.1", "10.0.0.2").rules.values();
  table.rules.push(kernelRule(rules[1]!));
  table.listRulesIfChanged = () => Promise.reject(new Error("No dump expected"));
  assert.deepEqual(await reconciler.restore([rules[0]!], quiet), { added: 1, failed: false });
  table.refuse.set("10.0.0.2", EINVAL);
  assert.deepEqual(await reconciler.restore([rules[1]!], quiet), { added: 0, failed: true });
});

Deno.test("checkPermission() passes on ENOENT and throws PermissionError on EPERM", async () => {
  const table = new MemoryTable();
  await checkPermission(table, PROTO);
  table.refuse.set("255.255.255.255", EPERM);
  await assert.rejects(checkPermission(table, PROTO), /NET_ADMIN/);
});

/** Rules as `ip -d rule show` would list them: source, table, protocol. */
const rows = (table: MemoryTable) =>
  table.rules.map((r) => `${r.src} ${r.table} ${r.protocol}`).sort();

/** The original operator's footprint: unmarked rules, one leaked with an old table. */
function originalFootprint(): MemoryTable {
  const table = new MemoryTable();
  const unmarked = (src: string, table: number) =>
    kernelRule({ family: 4, src, srcLen: 32, table, priority: 1000, protocol: 0 });
  table.rules.push(
    unmarked("10.0.0.1", 100), // a current config's rule
    unmarked("10.0.0.1", 50), // leaked when the IPRule's table changed
    unmarked("10.0.0.7", 100), // its config is absent
    unmarked("10.99.0.1", 100), // the admin's: no config has this source
  );
  return table;
}

function adoptionState(): DesiredState {
  const state = new DesiredState({ protocol: PROTO, trackSources: true });
  state.update("c0", config("c0", "10.0.0.1"));
  state.update("c7", { ...config("c7", "10.0.0.7"), state: "absent" });
  return state;
}

Deno.test("RuleReconciler with adoption marks the unmarked rules it takes over and deletes leftovers", async () => {
  const table = originalFootprint();
  const reconciler = new RuleReconciler(table, { protocol: PROTO, adoptUnmarked: true });
  const result = await reconciler.reconcile(adoptionState().snapshot(), quiet);
  assert.equal(result.converged, true);
  assert.deepEqual(
    [result.desired, result.applied, result.added, result.adopted, result.deleted],
    [1, 1, 1, 1, 3],
  );
  assert.deepEqual(rows(table), ["10.0.0.1 100 201", "10.99.0.1 100 0"]);
  // Done: the next reconcile finds nothing to do.
  const again = await reconciler.reconcile(adoptionState().snapshot(), quiet);
  assert.deepEqual([again.added, again.deleted, again.adopted, again.converged], [0, 0, 0, true]);
});

Deno.test("RuleReconciler without adoption touches no unmarked rule", async () => {
  const table = originalFootprint();
  const before = rows(table);
  const result = await new RuleReconciler(table, { protocol: PROTO }).reconcile(
    adoptionState().snapshot(),
    quiet,
  );
  assert.deepEqual([result.converged, result.applied, result.added, result.deleted], [
    true,
    1,
    0,
    0,
  ]);
  assert.deepEqual(rows(table), before);
});

Deno.test("RuleReconciler with adoption keeps the unmarked rule when its marked copy is refused", async () => {
  const table = originalFootprint();
  table.refuse.set("10.0.0.1", 17); // EEXIST: a kernel whose duplicate check ignored protocols
  const reconciler = new RuleReconciler(table, { protocol: PROTO, adoptUnmarked: true });
  const first = await reconciler.reconcile(adoptionState().snapshot(), quiet);
  assert.deepEqual([first.adopted, first.recheck, first.converged], [0, true, false]);
  assert.ok(rows(table).includes("10.0.0.1 100 0"), "the unmarked rule still routes");
  const second = await reconciler.reconcile(adoptionState().snapshot(), quiet);
  assert.match(second.failed[0]?.error ?? "", /EEXIST/);
  assert.ok(rows(table).includes("10.0.0.1 100 0"));
});

Deno.test("RuleReconciler in dry-run with adoption plans it and changes nothing", async () => {
  const table = originalFootprint();
  const before = rows(table);
  const result = await new RuleReconciler(table, {
    protocol: PROTO,
    adoptUnmarked: true,
    dryRun: true,
  }).reconcile(adoptionState().snapshot(), quiet);
  assert.deepEqual(
    [result.plan.adoption?.adopt.length, result.plan.adoption?.remove.length, result.converged],
    [1, 2, false],
  );
  assert.deepEqual(rows(table), before);
});
