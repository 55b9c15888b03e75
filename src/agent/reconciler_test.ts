import assert from "node:assert/strict";
import { type KernelRule, NetlinkError, type RuleResult, type RuleSpec } from "../../ffi/mod.ts";
import { Logger } from "../log.ts";
import { desiredRules } from "./plan.ts";
import { kernelRule } from "./test_rules.ts";
import { checkPermission, PermissionError, RuleReconciler, type RuleTable } from "./reconciler.ts";

const PROTO = 201;
const EPERM = 1;
const EINVAL = 22;

/** An in-memory rule list standing in for the kernel (the unit tier has no netlink). */
class MemoryTable implements RuleTable {
  rules: KernelRule[] = [];
  /** Sources whose add fails with this errno. */
  refuse = new Map<string, number>();

  listRules(): Promise<KernelRule[]> {
    return Promise.resolve(this.rules.map((r) => ({ ...r })));
  }

  addRules(rules: readonly RuleSpec[]): Promise<RuleResult[]> {
    return Promise.resolve(rules.map((rule) => {
      const errno = this.refuse.get(rule.src);
      if (errno !== undefined) return { rule, error: new NetlinkError("add", errno, { rule }) };
      this.rules.push(kernelRule(rule));
      return { rule };
    }));
  }

  deleteRules(rules: readonly RuleSpec[]): Promise<RuleResult[]> {
    return Promise.resolve(rules.map((rule) => {
      const errno = this.refuse.get(rule.src);
      if (errno !== undefined) return { rule, error: new NetlinkError("delete", errno, { rule }) };
      const at = this.rules.findIndex((r) =>
        r.src === rule.src && r.table === rule.table && r.priority === rule.priority &&
        r.protocol === rule.protocol
      );
      if (at < 0) return { rule, error: new NetlinkError("delete", 2, { rule }) };
      this.rules.splice(at, 1);
      return { rule };
    }));
  }
}

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

Deno.test("RuleReconciler.restore() puts back deleted rules without a dump", async () => {
  const table = new MemoryTable();
  const reconciler = new RuleReconciler(table, { protocol: PROTO });
  const rules = desired("10.0.0.1", "10.0.0.2").rules.values();
  table.rules.push(kernelRule(rules[1]!));
  table.listRules = () => Promise.reject(new Error("No dump expected"));
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
