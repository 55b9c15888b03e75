import assert from "node:assert/strict";
import type { RuleSpec } from "../../ffi/mod.ts";
import type { StopInput } from "../drain.ts";
import { Logger } from "../log.ts";
import { AgentMetrics } from "./metrics.ts";
import { type ConfigSource, NodeAgent, type StatusSink } from "./node_agent.ts";
import type { NodeReport } from "./node_state.ts";
import type { ConfigRule } from "./rule_plan.ts";
import { kernelRule, MemoryTable } from "./test_rules.ts";

const PROTO = 201;
const EPERM = 1;
const EEXIST = 17;
const HOUR = 3_600_000;

function config(serviceIP: string, state: "present" | "absent" = "present"): ConfigRule {
  return { name: `iprc-${serviceIP}`, serviceIP, table: 100, priority: 1000, state };
}

function spec(src: string, protocol = PROTO): RuleSpec {
  return { family: 4, src, srcLen: 32, table: 100, priority: 1000, protocol };
}

/** A status sink recording every report. */
class MemoryStatus implements StatusSink {
  readonly updates: NodeReport[] = [];
  readonly writes: NodeReport[] = [];
  /** Set: every write fails with it. */
  failWrites: Error | undefined;

  update(report: NodeReport): void {
    this.updates.push(report);
  }

  write(report: NodeReport): Promise<boolean> {
    if (this.failWrites) return Promise.reject(this.failWrites);
    this.writes.push(report);
    return Promise.resolve(true);
  }

  get last(): NodeReport | undefined {
    return this.updates.at(-1);
  }
}

/** A NodeAgent over a memory kernel, with its parts at hand. */
function setup(
  options: {
    resyncMs?: number;
    dryRun?: boolean;
    adoptUnmarked?: boolean;
    /** false: the agent's own (real) clock. */
    manualClock?: boolean;
    /** false: no onFatal callback. */
    onFatal?: boolean;
  } = {},
) {
  const table = new MemoryTable();
  const source: { -readonly [K in keyof ConfigSource]: ConfigSource[K] } = {
    synced: true,
    healthy: true,
    lastError: undefined,
  };
  const status = new MemoryStatus();
  const clock = { ms: 0, now: () => clock.ms };
  const logs: Record<string, unknown>[] = [];
  const log = new Logger({ level: "debug", sink: (line) => logs.push(JSON.parse(line)) });
  const metrics = new AgentMetrics();
  const fatal: Error[] = [];
  const agent = new NodeAgent(
    options.manualClock === false ? { table, source, status } : { table, source, status, clock },
    {
      protocol: PROTO,
      resyncMs: options.resyncMs ?? HOUR,
      debounceMs: 0,
      log,
      metrics,
      ...(options.dryRun === undefined ? {} : { dryRun: options.dryRun }),
      ...(options.adoptUnmarked === undefined ? {} : { adoptUnmarked: options.adoptUnmarked }),
      ...(options.onFatal === false ? {} : { onFatal: (error) => fatal.push(error) }),
    },
  );
  const owned = () => table.rules.filter((r) => r.protocol === PROTO).map((r) => r.src).sort();
  const errors = () => logs.filter((l) => l.level === "error");
  const metric = async (name: string) => {
    let sum = 0;
    for (const line of (await metrics.registry.metrics()).split("\n")) {
      if (line.startsWith(name)) sum += Number(line.split(" ").pop());
    }
    return sum;
  };
  return { agent, table, source, status, clock, logs, errors, metric, owned, fatal };
}

/** An agent that has listed `ips` as desired and converged on them. */
/** Gives the agent one config (`key`, for source `ip`), starts it, waits for the first reconcile. */
async function startWith(agent: NodeAgent, key: string, ip: string) {
  agent.configChanged(key, config(ip));
  agent.start();
  await agent.settled();
}

async function converged(...ips: string[]) {
  const parts = setup();
  for (const ip of ips) parts.agent.configChanged(ip, config(ip));
  parts.agent.start();
  await parts.agent.settled();
  assert.deepEqual(parts.owned(), [...ips].sort());
  return parts;
}

Deno.test("NodeAgent adds and deletes nothing before the first full list, then converges", async () => {
  const { agent, table, status, owned } = setup();
  table.rules.push(kernelRule(spec("10.0.0.9")));
  agent.configChanged("a", config("10.0.0.1"));
  await agent.settled();
  assert.deepEqual(owned(), ["10.0.0.9"]);
  assert.equal(table.dumps, 0);
  assert.deepEqual(agent.readiness(), { ready: false, reason: "first reconcile pending" });
  agent.start();
  await agent.settled();
  assert.deepEqual(owned(), ["10.0.0.1"]);
  assert.deepEqual(status.last, { desired: 1, applied: 1, failed: [], converged: true });
  assert.deepEqual(agent.readiness(), { ready: true, reason: "converged, 1 rule(s) applied" });
  await agent.stop();
});

Deno.test("NodeAgent: a desired change (watch) reconciles the difference and reports it", async () => {
  const { agent, status, owned } = await converged("10.0.0.1");
  agent.configChanged("10.0.0.2", config("10.0.0.2"));
  agent.configChanged("10.0.0.1", config("10.0.0.1", "absent"));
  await agent.settled();
  assert.deepEqual(owned(), ["10.0.0.2"]);
  assert.deepEqual(status.last, { desired: 1, applied: 1, failed: [], converged: true });
  await agent.stop();
});

Deno.test("NodeAgent: a foreign delete of a desired rule is restored without a dump", async () => {
  const { agent, table, owned, metric } = await converged("10.0.0.1", "10.0.0.2");
  const dumps = table.dumps;
  const [gone] = table.rules.splice(0, 1);
  agent.kernelChanged({ type: "deleted", rule: gone!, portId: 99 }, false);
  await agent.settled();
  assert.deepEqual(owned(), ["10.0.0.1", "10.0.0.2"]);
  assert.equal(table.dumps, dumps, "restored from the event, no dump");
  assert.equal(await metric("iprule_agent_drift_repairs_total"), 1);
  assert.equal(await metric('iprule_agent_reconciles_total{trigger="kernel",result="repaired"'), 1);
  await agent.stop();
});

Deno.test("NodeAgent: a foreign delete after the resync period runs a full reconcile instead", async () => {
  const { agent, table, clock, owned } = await converged("10.0.0.1");
  const dumps = table.dumps;
  clock.ms += 2 * HOUR;
  const [gone] = table.rules.splice(0, 1);
  agent.kernelChanged({ type: "deleted", rule: gone!, portId: 99 }, false);
  await agent.settled();
  assert.deepEqual(owned(), ["10.0.0.1"]);
  assert.equal(table.dumps, dumps + 1);
  await agent.stop();
});

Deno.test("NodeAgent: an own delete that removed a desired rule runs a full reconcile at once", async () => {
  const { agent, table, owned } = await converged("10.0.0.1");
  const dumps = table.dumps;
  // The kernel matched the desired rule for a delete meant for another (`from all` ignores the
  // source): our own socket's event says a desired rule is gone.
  const [gone] = table.rules.splice(0, 1);
  agent.kernelChanged({ type: "deleted", rule: gone!, portId: 1 }, true);
  await agent.settled();
  assert.deepEqual(owned(), ["10.0.0.1"]);
  assert.equal(table.dumps, dumps + 1, "a dump, not a restore");
  await agent.stop();
});

Deno.test("NodeAgent ignores own events and foreign changes that touch no desired or own rule", async () => {
  const { agent, table } = await converged("10.0.0.1");
  const dumps = table.dumps;
  const own = kernelRule(spec("10.0.0.7"));
  agent.kernelChanged({ type: "added", rule: own, portId: 1 }, true);
  agent.kernelChanged({ type: "deleted", rule: own, portId: 1 }, true);
  const foreign = kernelRule(spec("10.0.0.8", 3));
  agent.kernelChanged({ type: "added", rule: foreign, portId: 99 }, false);
  await agent.settled();
  assert.equal(table.dumps, dumps);
  await agent.stop();
});

Deno.test("NodeAgent: a foreign rule with its protocol runs a full reconcile that deletes it", async () => {
  const { agent, table, owned } = await converged("10.0.0.1");
  const stray = kernelRule(spec("10.0.0.5"));
  table.rules.push(stray);
  agent.kernelChanged({ type: "added", rule: stray, portId: 99 }, false);
  await agent.settled();
  assert.deepEqual(owned(), ["10.0.0.1"]);
  await agent.stop();
});

Deno.test("NodeAgent: lost kernel events run a full reconcile", async () => {
  const { agent, table, owned } = await converged("10.0.0.1");
  table.rules.length = 0; // flushed while no event arrived
  agent.eventsLost();
  await agent.settled();
  assert.deepEqual(owned(), ["10.0.0.1"]);
  await agent.stop();
});

Deno.test("NodeAgent: events lost while a reconcile runs make the next run a full one, repairs pending or not", async () => {
  const { agent, table, owned } = await converged("10.0.0.1", "10.0.0.2");
  agent.eventsLost(); // a full reconcile starts and dumps at once
  // While it runs: one rule's delete is reported, the other's event is lost.
  const [a, b] = table.rules.splice(0, 2);
  agent.kernelChanged({ type: "deleted", rule: a!, portId: 99 }, false);
  agent.eventsLost();
  await agent.settled();
  assert.deepEqual(owned(), ["10.0.0.1", "10.0.0.2"], `${b!.src} restored too`);
  await agent.stop();
});

Deno.test("NodeAgent: the resync tick repairs drift no event reported, counted as drift", async () => {
  const parts = setup({ resyncMs: 20 });
  const { agent, table, owned, metric } = parts;
  await startWith(agent, "a", "10.0.0.1");
  table.rules.length = 0; // no kernel event tells
  await new Promise<void>((resolve) => (table.onDump = resolve)); // the resync timer fired
  await agent.settled();
  assert.deepEqual(owned(), ["10.0.0.1"]);
  assert.equal(await metric("iprule_agent_drift_repairs_total"), 1);
  assert.ok(await metric('iprule_agent_reconciles_total{trigger="resync"') >= 1);
  await agent.stop();
});

Deno.test("NodeAgent: a restore that meets EEXIST runs a full reconcile", async () => {
  const { agent, table, owned } = await converged("10.0.0.1");
  const dumps = table.dumps;
  const [gone] = table.rules.splice(0, 1);
  table.refuse.set("10.0.0.1", EEXIST);
  agent.kernelChanged({ type: "deleted", rule: gone!, portId: 99 }, false);
  await agent.settled();
  assert.ok(table.dumps > dumps, "the full reconcile dumped");
  table.refuse.clear();
  agent.eventsLost();
  await agent.settled();
  assert.deepEqual(owned(), ["10.0.0.1"]);
  await agent.stop();
});

Deno.test("NodeAgent: EEXIST twice in a row is reported as a failed rule", async () => {
  const { agent, table, status } = setup();
  table.refuse.set("10.0.0.2", EEXIST); // a rule the kernel treats as the same blocks it
  agent.configChanged("a", config("10.0.0.1"));
  await startWith(agent, "b", "10.0.0.2");
  // The first EEXIST asks for a recheck at once; the second is a failure.
  assert.equal(status.updates.length, 2);
  const report = status.last!;
  assert.equal(report.converged, false);
  assert.equal(report.applied, 1);
  assert.equal(report.failed[0]?.rule, "from 10.0.0.2 lookup 100 priority 1000 protocol 201");
  assert.match(report.failed[0]?.error ?? "", /EEXIST.*blocks this one/);
  assert.deepEqual(agent.readiness(), { ready: false, reason: "1 rule(s) failed, retrying" });
  await agent.stop();
});

Deno.test("NodeAgent: a reconcile that throws makes it not ready and reports Converged=False", async () => {
  const { agent, table, status, errors } = await converged("10.0.0.1");
  table.dumpError = new Error("Rule dump failed: ETIMEDOUT");
  agent.eventsLost();
  await agent.settled();
  assert.deepEqual(agent.readiness(), {
    ready: false,
    reason: "last reconcile failed: Rule dump failed: ETIMEDOUT",
  });
  assert.deepEqual(status.last, {
    desired: 1,
    applied: 1,
    failed: [],
    converged: false,
    error: "Rule dump failed: ETIMEDOUT",
  });
  assert.equal(errors().at(-1)?.msg, "Reconcile failed");
  // The next trigger succeeds: ready again, and the status says so.
  agent.eventsLost();
  await agent.settled();
  assert.equal(agent.readiness().ready, true);
  assert.deepEqual(status.last, { desired: 1, applied: 1, failed: [], converged: true });
  await agent.stop();
});

Deno.test("NodeAgent: EPERM ends the run (fatal), keeps the rules and exits 1", async () => {
  const { agent, table, fatal, owned } = await converged("10.0.0.1");
  table.refuse.set("10.0.0.2", EPERM);
  agent.configChanged("b", config("10.0.0.2"));
  await agent.settled();
  assert.equal(fatal.length, 1);
  assert.match(agent.readiness().reason, /^stopped: .*EPERM/);
  await agent.stop();
  let asked = false;
  const code = await agent.finish(() => {
    asked = true;
    return Promise.resolve({ ...RUNNING, namespace: "deleting" });
  });
  assert.equal(code, 1);
  assert.equal(asked, false, "no drain decision after a fatal error");
  assert.deepEqual(owned(), ["10.0.0.1"]);
});

Deno.test("NodeAgent: a list/watch error keeps the desired set and the kernel (fail static)", async () => {
  const { agent, source, owned, logs } = await converged("10.0.0.1", "10.0.0.2");
  const error = new Error("connect ECONNREFUSED");
  source.healthy = false;
  source.lastError = error;
  agent.sourceFailed(error, 800);
  assert.equal(agent.desired.rules.size, 2);
  agent.eventsLost();
  await agent.settled();
  assert.deepEqual(owned(), ["10.0.0.1", "10.0.0.2"]);
  assert.deepEqual(agent.readiness(), {
    ready: false,
    reason: "API server unreachable, kernel rules kept as they are: connect ECONNREFUSED",
  });
  assert.ok(
    logs.some((l) => l.msg === "IPRuleConfig list/watch failed; kernel rules kept as they are"),
  );
  source.synced = false;
  assert.equal(
    agent.readiness().reason,
    "IPRuleConfigs not listed yet: connect ECONNREFUSED",
  );
  await agent.stop();
});

/** What a stopping agent of a live install, on a selected node, knows. */
const RUNNING: Omit<StopInput, "fatal"> = {
  namespace: "live",
  agent: "live",
  drainMarked: false,
  selected: true,
};

Deno.test("NodeAgent: a stop keeps every rule on a restart, a rolling update or when nothing is known", async () => {
  const unknown = {
    namespace: undefined,
    agent: undefined,
    drainMarked: undefined,
    selected: undefined,
  };
  for (const known of [RUNNING, unknown]) {
    const { agent, owned, status, logs } = await converged("10.0.0.1", "10.0.0.2");
    await agent.stop();
    assert.equal(await agent.finish(() => Promise.resolve(known)), 0);
    assert.deepEqual(owned(), ["10.0.0.1", "10.0.0.2"], JSON.stringify(known));
    assert.deepEqual(status.writes, []);
    assert.equal(logs.at(-1)?.msg, "Agent stopped; kernel rules left in place");
  }
});

Deno.test("NodeAgent: a stop that will not be replaced removes its rules, keeps foreign ones, reports draining", async () => {
  const cases: [Partial<StopInput>, string][] = [
    [{ drainMarked: true }, "node left the Agent's selection"],
    [{ selected: false }, "node no longer selected by the Agent"],
    [{ agent: "gone" }, "the Agent was deleted"],
    [{ namespace: "deleting", agent: undefined }, "the operator's namespace is being deleted"],
  ];
  for (const [known, reason] of cases) {
    const { agent, table, owned, status, logs } = await converged("10.0.0.1", "10.0.0.2");
    table.rules.push(kernelRule(spec("10.0.0.1", 3)));
    await agent.stop();
    assert.equal(await agent.finish(() => Promise.resolve({ ...RUNNING, ...known })), 0);
    assert.deepEqual(owned(), [], reason);
    assert.deepEqual(table.rules.map((r) => [r.src, r.protocol]), [["10.0.0.1", 3]]);
    assert.deepEqual(status.writes, [{
      desired: 0,
      applied: 0,
      failed: [],
      converged: true,
      draining: true,
    }]);
    assert.ok(logs.some((l) => l.msg === `Agent stopped; ${reason}, its rules removed`), reason);
  }
});

Deno.test("NodeAgent: a drain whose report fails (token or CRD gone) still removes the rules and exits 0", async () => {
  const { agent, owned, status, logs } = await converged("10.0.0.1");
  status.failWrites = new Error("401 Unauthorized");
  await agent.stop();
  assert.equal(await agent.finish(() => Promise.resolve({ ...RUNNING, agent: "gone" })), 0);
  assert.deepEqual(owned(), []);
  assert.ok(
    logs.some((l) => l.level === "info" && l.msg === "Drain not reported in the IPRuleNodeState"),
  );
  assert.ok(!logs.some((l) => l.level === "error" || l.level === "warn"));
});

Deno.test("NodeAgent.stop() waits for the reconcile in progress and runs no more", async () => {
  const { agent, table, owned } = await converged("10.0.0.1");
  agent.configChanged("b", config("10.0.0.2"));
  agent.eventsLost(); // runs at once
  await agent.stop();
  assert.deepEqual(owned(), ["10.0.0.1", "10.0.0.2"]);
  const dumps = table.dumps;
  agent.configChanged("c", config("10.0.0.3"));
  agent.eventsLost();
  await agent.settled();
  assert.equal(table.dumps, dumps);
  assert.ok(!owned().includes("10.0.0.3"));
});

/** The log lines with this message. */
function lines(logs: Record<string, unknown>[], msg: string): Record<string, unknown>[] {
  return logs.filter((l) => l.msg === msg);
}

Deno.test("NodeAgent logs and counts each reconcile: trigger, id, duration, changes", async () => {
  const { agent, table, clock, logs, metric } = setup();
  clock.ms = 50_000;
  table.rules.push(kernelRule(spec("10.0.0.9")));
  table.onDump = () => (clock.ms += 1234.56); // the dump takes 1.23456 s
  agent.configChanged("a", config("10.0.0.1"));
  await startWith(agent, "b", "10.0.0.2");
  const [first] = lines(logs, "Rules reconciled");
  assert.equal(first?.level, "info");
  assert.equal(first?.trigger, "start");
  assert.match(String(first?.reconcileID), /^[0-9a-f]{8}$/);
  assert.deepEqual(
    [
      first?.desired,
      first?.applied,
      first?.added,
      first?.deleted,
      first?.failed,
      first?.durationMs,
    ],
    [2, 2, 2, 1, 0, 1234.6],
  );
  assert.equal("adopted" in first!, false);
  assert.equal(await metric('iprule_agent_reconciles_total{trigger="start",result="converged"'), 1);
  assert.equal(await metric('iprule_agent_rule_changes_total{op="add"'), 2);
  assert.equal(await metric('iprule_agent_rule_changes_total{op="delete"'), 1);
  const seconds = await metric("iprule_agent_reconcile_duration_seconds_sum");
  assert.ok(Math.abs(seconds - 1.23456) < 1e-9, `${seconds} s`);
  assert.equal(await metric("iprule_agent_drift_repairs_total"), 0, "desired changed: no drift");
  assert.equal(agent.last?.applied, 2);
  // A config change reconciles as "watch"; nothing to do is logged at debug level.
  agent.configChanged("c", config("10.0.0.2", "absent"));
  await agent.settled();
  assert.equal(await metric('iprule_agent_reconciles_total{trigger="watch",result="converged"'), 1);
  agent.eventsLost();
  await agent.settled();
  const idle = lines(logs, "Rules reconciled").at(-1);
  assert.deepEqual([idle?.level, idle?.trigger, idle?.added], ["debug", "kernel", 0]);
  assert.equal(
    await metric('iprule_agent_reconciles_total{trigger="kernel",result="converged"'),
    1,
  );
  // Drift: one rule added and one deleted, with the desired set unchanged, counts 2.
  table.rules.splice(0, 1);
  table.rules.push(kernelRule(spec("10.0.0.8")));
  agent.eventsLost();
  await agent.settled();
  const drift = lines(logs, "Drift repaired").at(-1);
  assert.deepEqual([drift?.level, drift?.added, drift?.deleted], ["info", 1, 1]);
  assert.equal(await metric("iprule_agent_drift_repairs_total"), 2);
  await agent.stop();
});

Deno.test("NodeAgent measures reconciles with its own clock when given none", async () => {
  const { agent, logs } = setup({ manualClock: false });
  await startWith(agent, "a", "10.0.0.1");
  const duration = lines(logs, "Rules reconciled")[0]?.durationMs;
  assert.ok(typeof duration === "number" && duration >= 0, `durationMs ${duration}`);
  await agent.stop();
});

Deno.test("NodeAgent logs a failed rule at info level though nothing changed", async () => {
  const { agent, table, logs, metric } = setup();
  table.refuse.set("10.0.0.2", 22);
  await startWith(agent, "b", "10.0.0.2");
  const line = lines(logs, "Rules reconciled").at(-1);
  assert.deepEqual([line?.level, line?.added, line?.failed], ["info", 0, 1]);
  assert.equal(await metric('iprule_agent_reconciles_total{trigger="start",result="failed"'), 1);
  await agent.stop();
});

Deno.test("NodeAgent restores with one add, logged and counted as a kernel repair", async () => {
  const { agent, table, clock, logs, metric } = await converged("10.0.0.1");
  clock.ms = 7000;
  const add = table.addRules.bind(table);
  table.addRules = (rules) => {
    clock.ms += 12.345; // the restore takes 12.345 ms
    return add(rules);
  };
  const [gone] = table.rules.splice(0, 1);
  agent.kernelChanged({ type: "deleted", rule: gone!, portId: 99 }, false);
  await agent.settled();
  const line = lines(logs, "Drift repaired").at(-1);
  assert.deepEqual([line?.restored, line?.trigger, line?.durationMs], [1, "kernel", 12.3]);
  assert.match(String(line?.reconcileID), /^[0-9a-f]{8}$/);
  assert.equal(await metric('iprule_agent_rule_changes_total{op="add"'), 2);
  // A restore that fails (EEXIST) is counted as failed, then a full reconcile runs.
  const [again] = table.rules.splice(0, 1);
  table.refuse.set("10.0.0.1", EEXIST);
  clock.ms += 1;
  agent.kernelChanged({ type: "deleted", rule: again!, portId: 99 }, false);
  await agent.settled();
  // The restore, then the full reconcile and its recheck (EEXIST still), all failed.
  assert.equal(await metric('iprule_agent_reconciles_total{trigger="kernel",result="failed"'), 3);
  assert.equal(await metric('iprule_agent_reconciles_total{trigger="kernel",result="repaired"'), 1);
  await agent.stop();
});

Deno.test("NodeAgent: a foreign delete right at the resync period, or after a late full reconcile, is timed from that reconcile", async () => {
  const parts = setup();
  parts.clock.ms = 1000;
  await startWith(parts.agent, "a", "10.0.0.1");
  const { agent, table, clock } = parts;
  // Less than the period since the full reconcile at 1000 ms: a restore, no dump.
  clock.ms = 1000 + HOUR - 1;
  let dumps = table.dumps;
  agent.kernelChanged({ type: "deleted", rule: table.rules.splice(0, 1)[0]!, portId: 99 }, false);
  await agent.settled();
  assert.equal(table.dumps, dumps, "restored");
  // Exactly the period: a full reconcile.
  clock.ms = 1000 + HOUR;
  dumps = table.dumps;
  agent.kernelChanged({ type: "deleted", rule: table.rules.splice(0, 1)[0]!, portId: 99 }, false);
  await agent.settled();
  assert.equal(table.dumps, dumps + 1, "dumped");
  assert.deepEqual(parts.owned(), ["10.0.0.1"]);
  await agent.stop();
});

Deno.test("NodeAgent: a foreign delete with an own delete, a stray own rule or a config change pending runs a full reconcile", async () => {
  // Events that arrive while a full reconcile runs (after its dump) are handled together by the
  // next run: the foreign delete alone would be restored, the others need the dump.
  const ownDelete = await converged("10.0.0.1", "10.0.0.2");
  ownDelete.agent.eventsLost(); // a full reconcile starts and dumps at once
  const [a, b] = ownDelete.table.rules.splice(0, 2);
  ownDelete.agent.kernelChanged({ type: "deleted", rule: a!, portId: 99 }, false);
  ownDelete.agent.kernelChanged({ type: "deleted", rule: b!, portId: 1 }, true);
  await ownDelete.agent.settled();
  assert.deepEqual(ownDelete.owned(), ["10.0.0.1", "10.0.0.2"]);
  await ownDelete.agent.stop();

  const stray = await converged("10.0.0.1");
  stray.agent.eventsLost();
  const [gone] = stray.table.rules.splice(0, 1);
  const extra = kernelRule(spec("10.0.0.5"));
  stray.table.rules.push(extra);
  stray.agent.kernelChanged({ type: "deleted", rule: gone!, portId: 99 }, false);
  stray.agent.kernelChanged({ type: "added", rule: extra, portId: 99 }, false);
  await stray.agent.settled();
  assert.deepEqual(stray.owned(), ["10.0.0.1"]);
  await stray.agent.stop();

  // A kernel run covers the config changes waiting for their debounce: it must be full.
  const changed = await converged("10.0.0.1");
  changed.agent.configChanged("c", config("10.0.0.3"));
  const [deleted] = changed.table.rules.splice(0, 1);
  changed.agent.kernelChanged({ type: "deleted", rule: deleted!, portId: 99 }, false);
  await changed.agent.settled();
  assert.deepEqual(changed.owned(), ["10.0.0.1", "10.0.0.3"]);
  await changed.agent.stop();
});

Deno.test("NodeAgent: a foreign copy of a desired rule appearing, or an own rule with selectors going, restores nothing", async () => {
  const { agent, table, owned, metric } = await converged("10.0.0.1");
  const copy = kernelRule(spec("10.0.0.1", 3));
  table.rules.push(copy);
  agent.kernelChanged({ type: "added", rule: copy, portId: 99 }, false);
  await agent.settled();
  const odd = kernelRule(spec("10.0.0.1"), { iif: "eth0", plain: false });
  agent.kernelChanged({ type: "deleted", rule: odd, portId: 99 }, false);
  await agent.settled();
  assert.deepEqual(owned(), ["10.0.0.1"], "one own rule, no second copy");
  assert.equal(await metric("iprule_agent_drift_repairs_total"), 0);
  await agent.stop();
});

Deno.test("NodeAgent: a reconcile that fails before any succeeded reports no status", async () => {
  const { agent, table, status, logs, metric } = setup();
  table.dumpError = new Error("Rule dump failed: ENOBUFS");
  await startWith(agent, "a", "10.0.0.1");
  assert.deepEqual(status.updates, []);
  assert.deepEqual(agent.readiness(), {
    ready: false,
    reason: "last reconcile failed: Rule dump failed: ENOBUFS",
  });
  assert.equal(await metric('iprule_agent_reconciles_total{trigger="start",result="error"'), 1);
  const failed = lines(logs, "Reconcile failed")[0];
  assert.deepEqual([failed?.level, failed?.trigger], ["error", "start"]);
  assert.match(JSON.stringify(failed?.err), /ENOBUFS/);
  await agent.stop();
});

Deno.test("NodeAgent: EPERM is logged once with the hint, sets fatal, and needs no onFatal", async () => {
  const { agent, table, errors, logs } = setup({ onFatal: false });
  table.refuse.set("10.0.0.1", EPERM);
  await startWith(agent, "a", "10.0.0.1");
  assert.ok(agent.fatal instanceof Error);
  assert.deepEqual(agent.readiness(), { ready: false, reason: `stopped: ${agent.fatal.message}` });
  assert.deepEqual(errors().map((l) => l.msg), ["Rules not changed: permission denied"]);
  const [line] = lines(logs, "Rules not changed: permission denied");
  assert.equal(
    line?.hint,
    "run the agent with the NET_ADMIN capability (the DaemonSet adds it; locally: sudo task run-agent)",
  );
  assert.ok(line?.err !== undefined);
  assert.equal(line?.trigger, "start");
  await agent.stop();
});

Deno.test("NodeAgent: EPERM on a restore is fatal too, counted as an error", async () => {
  const { agent, table, fatal, metric } = await converged("10.0.0.1");
  const [gone] = table.rules.splice(0, 1);
  table.refuse.set("10.0.0.1", EPERM);
  agent.kernelChanged({ type: "deleted", rule: gone!, portId: 99 }, false);
  await agent.settled();
  assert.equal(fatal.length, 1);
  assert.equal(await metric('iprule_agent_reconciles_total{trigger="kernel",result="error"'), 1);
  await agent.stop();
});

Deno.test("NodeAgent.readiness() before the first list: why, with the source's error when there is one", () => {
  const { agent, source } = setup();
  source.synced = false;
  assert.deepEqual(agent.readiness(), { ready: false, reason: "IPRuleConfigs not listed yet" });
  source.lastError = new Error("403 Forbidden");
  assert.deepEqual(agent.readiness(), {
    ready: false,
    reason: "IPRuleConfigs not listed yet: 403 Forbidden",
  });
});

Deno.test("NodeAgent logs a source failure with its retry delay", () => {
  const { agent, logs } = setup();
  agent.sourceFailed(new Error("connect ECONNREFUSED"), 800);
  const [line] = lines(logs, "IPRuleConfig list/watch failed; kernel rules kept as they are");
  assert.equal(line?.level, "warn");
  assert.equal(line?.delayMs, 800);
  assert.match(JSON.stringify(line?.err), /ECONNREFUSED/);
});

Deno.test("NodeAgent dry run: plans once, changes no rule and reports nothing", async () => {
  const { agent, table, status, owned, metric } = setup({ dryRun: true });
  table.rules.push(kernelRule(spec("10.0.0.9")));
  agent.configChanged("a", config("10.0.0.1"));
  const result = await agent.reconcileOnce();
  assert.equal(await metric('iprule_agent_reconciles_total{trigger="start"'), 1);
  assert.deepEqual(result.plan.add.map((r) => r.src), ["10.0.0.1"]);
  assert.deepEqual(result.plan.delete.map((r) => r.src), ["10.0.0.9"]);
  assert.deepEqual(owned(), ["10.0.0.9"]);
  agent.start();
  await agent.settled();
  assert.deepEqual(status.updates, []);
  assert.deepEqual(owned(), ["10.0.0.9"]);
  await agent.stop();
});

Deno.test("NodeAgent with adoption takes over an unmarked rule and watches unmarked rules of config sources", async () => {
  const { agent, table, owned, logs } = setup({ adoptUnmarked: true });
  table.rules.push(kernelRule(spec("10.0.0.1", 0)));
  await startWith(agent, "a", "10.0.0.1");
  assert.deepEqual(owned(), ["10.0.0.1"]);
  assert.deepEqual(table.rules.map((r) => r.protocol), [PROTO], "the unmarked copy went");
  assert.equal(lines(logs, "Rules reconciled")[0]?.adopted, 1);
  // An unmarked leftover of the source appearing (another table) is looked at and removed.
  const leftover = kernelRule(spec("10.0.0.1", 0), { table: 50 });
  table.rules.push(leftover);
  agent.kernelChanged({ type: "added", rule: leftover, portId: 99 }, false);
  await agent.settled();
  assert.deepEqual(table.rules.map((r) => [r.protocol, r.table]), [[PROTO, 100]]);
  await agent.stop();
});

Deno.test("NodeAgent without adoption leaves unmarked rules and ignores their events", async () => {
  const { agent, table } = await converged("10.0.0.1");
  const dumps = table.dumps;
  const leftover = kernelRule(spec("10.0.0.1", 0), { table: 50 });
  table.rules.push(leftover);
  agent.kernelChanged({ type: "added", rule: leftover, portId: 99 }, false);
  await agent.settled();
  assert.equal(table.dumps, dumps);
  assert.equal(table.rules.length, 2);
  await agent.stop();
});

Deno.test("NodeAgent.finish(): the log says why rules stay, and a fatal stop decides without asking", async () => {
  const kept = await converged("10.0.0.1");
  await kept.agent.stop();
  await kept.agent.finish(() => Promise.resolve(RUNNING));
  const line = lines(kept.logs, "Agent stopped; kernel rules left in place")[0];
  assert.deepEqual([line?.reason, typeof line?.version], ["not uninstalled or drained", "string"]);

  const failed = setup();
  failed.table.refuse.set("10.0.0.1", EPERM);
  failed.agent.configChanged("a", config("10.0.0.1"));
  failed.agent.start();
  await failed.agent.settled();
  await failed.agent.stop();
  assert.equal(await failed.agent.finish(() => Promise.resolve(RUNNING)), 1);
  assert.equal(
    lines(failed.logs, "Agent stopped; kernel rules left in place")[0]?.reason,
    "stopped on an error",
  );
});

Deno.test("NodeAgent.finish(): a drain logs what it deleted; one whose dump fails keeps the rules and exits 1", async () => {
  const drained = await converged("10.0.0.1", "10.0.0.2");
  await drained.agent.stop();
  assert.equal(await drained.agent.finish(() => Promise.resolve({ ...RUNNING, agent: "gone" })), 0);
  const line = lines(drained.logs, "Agent stopped; the Agent was deleted, its rules removed")[0];
  assert.deepEqual([line?.deleted, line?.failed], [2, 0]);

  const broken = await converged("10.0.0.1");
  broken.table.dumpError = new Error("Rule dump failed: EBADF");
  await broken.agent.stop();
  assert.equal(await broken.agent.finish(() => Promise.resolve({ ...RUNNING, agent: "gone" })), 1);
  assert.deepEqual(broken.owned(), ["10.0.0.1"]);
  const error =
    lines(broken.logs, "Agent stopped; the Agent was deleted, but its rules were not removed")[0];
  assert.equal(error?.level, "error");
  assert.match(JSON.stringify(error?.err), /EBADF/);
  assert.deepEqual(broken.status.writes, []);
});

Deno.test("NodeAgent.finish(): a drain that cannot delete a rule exits 1 and reports it", async () => {
  const { agent, table, status, owned } = await converged("10.0.0.1", "10.0.0.2");
  table.refuse.set("10.0.0.2", 16); // EBUSY
  await agent.stop();
  assert.equal(await agent.finish(() => Promise.resolve({ ...RUNNING, agent: "gone" })), 1);
  assert.deepEqual(owned(), ["10.0.0.2"]);
  assert.equal(status.writes[0]?.failed.length, 1);
  assert.equal(status.writes[0]?.draining, true);
});

Deno.test("NodeAgent.finish(): a drain whose report fails logs the error", async () => {
  const { agent, status, logs } = await converged("10.0.0.1");
  status.failWrites = new Error("401 Unauthorized");
  await agent.stop();
  await agent.finish(() => Promise.resolve({ ...RUNNING, agent: "gone" }));
  const line = lines(logs, "Drain not reported in the IPRuleNodeState")[0];
  assert.match(JSON.stringify(line?.err), /401 Unauthorized/);
});

Deno.test("NodeAgent: a recheck runs in full though a foreign delete came during the run that asked for it", async () => {
  const { agent, table, status, owned } = setup();
  table.rules.push(kernelRule(spec("10.0.0.1")));
  table.refuse.set("10.0.0.2", EEXIST); // a rule the kernel treats as the same blocks it
  let first = true;
  table.onDump = () => {
    if (!first) return;
    first = false;
    // Right after this dump, someone deletes 10.0.0.1.
    queueMicrotask(() => {
      const [gone] = table.rules.splice(0, 1);
      agent.kernelChanged({ type: "deleted", rule: gone!, portId: 99 }, false);
    });
  };
  agent.configChanged("a", config("10.0.0.1"));
  await startWith(agent, "b", "10.0.0.2");
  assert.deepEqual(owned(), ["10.0.0.1"]);
  // The recheck ran (a dump): the second EEXIST is reported as a failed rule.
  assert.equal(status.last?.failed.length, 1);
  await agent.stop();
});

Deno.test("NodeAgent: a failed restore runs in full though another foreign delete came during it", async () => {
  const { agent, table, owned } = await converged("10.0.0.1", "10.0.0.2");
  const add = table.addRules.bind(table);
  let first = true;
  table.addRules = async (rules) => {
    const results = await add(rules); // 10.0.0.1 refused (EEXIST): the restore failed
    if (first) {
      first = false;
      table.refuse.clear();
      const [other] = table.rules.splice(0, 1); // meanwhile 10.0.0.2 is deleted too
      agent.kernelChanged({ type: "deleted", rule: other!, portId: 99 }, false);
    }
    return results;
  };
  table.refuse.set("10.0.0.1", EEXIST);
  const [gone] = table.rules.splice(0, 1);
  agent.kernelChanged({ type: "deleted", rule: gone!, portId: 99 }, false);
  await agent.settled();
  assert.deepEqual(owned(), ["10.0.0.1", "10.0.0.2"]);
  await agent.stop();
});
