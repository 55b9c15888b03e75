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
function setup(options: { resyncMs?: number } = {}) {
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
  const agent = new NodeAgent({ table, source, status, clock }, {
    protocol: PROTO,
    resyncMs: options.resyncMs ?? HOUR,
    debounceMs: 0,
    log,
    metrics,
    onFatal: (error) => fatal.push(error),
  });
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
  agent.configChanged("a", config("10.0.0.1"));
  agent.start();
  await agent.settled();
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
  agent.configChanged("b", config("10.0.0.2"));
  agent.start();
  await agent.settled();
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
