import assert from "node:assert/strict";
import type { IPRuleNodeState, IPRuleNodeStateStatus } from "../api/types.ts";
import { narrowIPRuleNodeState, narrowNode } from "../api/narrow.ts";
import { ApiError } from "../k8s/client.ts";
import { MemoryObjects } from "../../tests/support/memory_api.ts";
import { Logger } from "../log.ts";
import { MAX_FAILED_RULES } from "../api/limits.ts";
import {
  type NodeReport,
  type NodeStateApi,
  NodeStateWriter,
  type NodeStateWriterOptions,
  nodeStatus,
  sameNodeStatus,
  urgentChange,
} from "./node_state.ts";
import { Background } from "../../tests/support/background.ts";
import { MAX_TIMER_MS, REAL_TIMER, type Timer } from "../k8s/backoff.ts";
import { ManualClock } from "../../tests/support/manual_clock.ts";
import { DEFAULT_JITTER, jitteredInterval, URGENT_FLOOR_MS } from "../write_pacer.ts";

const T0 = "2025-12-31T00:00:00Z";
const T1 = "2026-01-01T00:00:00Z";
const T2 = "2026-01-01T00:00:10Z";
const T3 = "2026-01-01T00:00:20Z";
const OPTIONS = { version: "1.2.3", protocol: 201 };

function report(extra: Partial<NodeReport> = {}): NodeReport {
  return { desired: 3, applied: 3, failed: [], converged: true, ...extra };
}

const failing = report({
  applied: 2,
  converged: false,
  failed: [{
    rule: "from 10.0.0.1 lookup 100 priority 1000",
    error: "Invalid",
  }],
});

Deno.test("nodeStatus() reports counts, version, protocol and a Converged condition", () => {
  const status = nodeStatus(undefined, report(), { now: T1, ...OPTIONS });
  assert.deepEqual(status, {
    desiredRules: 3,
    appliedRules: 3,
    failedCount: 0,
    failedRules: [],
    agentVersion: "1.2.3",
    protocol: 201,
    lastConvergedTime: T1,
    conditions: [{
      type: "Converged",
      status: "True",
      reason: "RulesApplied",
      message: "All 3 desired rule(s) are in the kernel",
      lastTransitionTime: T1,
    }],
  });
});

Deno.test("nodeStatus() keeps lastConvergedTime while nothing changes", () => {
  const first = nodeStatus(undefined, report(), { now: T1, ...OPTIONS });
  const again = nodeStatus(first, report(), { now: T2, ...OPTIONS });
  assert.equal(again.lastConvergedTime, T1);
  assert.equal(again.conditions?.[0]?.lastTransitionTime, T1);
  assert.equal(sameNodeStatus(first, again), true);
});

Deno.test("nodeStatus() moves lastConvergedTime when the counts change", () => {
  const first = nodeStatus(undefined, report(), { now: T1, ...OPTIONS });
  const more = nodeStatus(first, report({ desired: 4, applied: 4 }), {
    now: T2,
    ...OPTIONS,
  });
  assert.equal(more.lastConvergedTime, T2);
  assert.equal(more.conditions?.[0]?.lastTransitionTime, T1);
  assert.equal(sameNodeStatus(first, more), false);
});

Deno.test("nodeStatus() moves lastConvergedTime only on a transition into converged", () => {
  const ok = nodeStatus(undefined, report(), { now: T1, ...OPTIONS });
  const bad = nodeStatus(ok, failing, { now: T2, ...OPTIONS });
  assert.equal(bad.lastConvergedTime, T1);
  assert.equal(bad.failedCount, 1);
  assert.deepEqual(bad.failedRules, failing.failed);
  assert.deepEqual(
    bad.conditions?.map((c) => [c.status, c.reason, c.lastTransitionTime]),
    [["False", "RulesFailed", T2]],
  );
  const stillBad = nodeStatus(bad, failing, { now: T3, ...OPTIONS });
  assert.equal(sameNodeStatus(bad, stillBad), true);
  const fixed = nodeStatus(stillBad, report(), { now: T3, ...OPTIONS });
  assert.equal(fixed.lastConvergedTime, T3);
  assert.equal(sameNodeStatus(stillBad, fixed), false);
});

Deno.test("nodeStatus() lists at most 20 failed rules, sorted, and counts them all", () => {
  const failed = Array.from({ length: 30 }, (_, i) => ({
    rule: `from 10.0.0.${30 - i} lookup 100 priority 1000`,
    error: "x".repeat(2000),
  }));
  const status = nodeStatus(undefined, report({ failed, converged: false }), {
    now: T1,
    ...OPTIONS,
  });
  assert.equal(status.failedCount, 30);
  assert.equal(status.failedRules?.length, MAX_FAILED_RULES);
  assert.equal(
    status.failedRules?.[0]?.rule,
    "from 10.0.0.1 lookup 100 priority 1000",
  );
  assert.equal(status.failedRules?.[0]?.error.length, 1024);
  assert.equal(status.lastConvergedTime, undefined);
});

Deno.test("sameNodeStatus() sees a changed error text, version or protocol", () => {
  const base = nodeStatus(undefined, failing, { now: T1, ...OPTIONS });
  const other = (s: Partial<IPRuleNodeStateStatus>) => ({ ...base, ...s });
  assert.equal(sameNodeStatus(base, other({ agentVersion: "2" })), false);
  assert.equal(sameNodeStatus(base, other({ protocol: 99 })), false);
  assert.equal(
    sameNodeStatus(
      base,
      other({
        failedRules: [{ rule: failing.failed[0]!.rule, error: "Other" }],
      }),
    ),
    false,
  );
  assert.equal(sameNodeStatus(undefined, base), false);
});

Deno.test("sameNodeStatus() compares failed rules by value, whatever their keys' order", () => {
  const status = nodeStatus(undefined, failing, { now: T1, ...OPTIONS });
  // As the API server returns it: keys sorted.
  const returned = {
    ...status,
    failedRules: (status.failedRules ?? []).map((f) => ({
      error: f.error,
      rule: f.rule,
    })),
  };
  assert.equal(sameNodeStatus(returned, status), true);
});

Deno.test("nodeStatus() reports a reconcile that failed as not converged, with its error", () => {
  const ok = nodeStatus(undefined, report(), { now: T1, ...OPTIONS });
  const broken = nodeStatus(
    ok,
    report({ converged: false, error: "dump failed: ETIMEDOUT" }),
    { now: T2, ...OPTIONS },
  );
  assert.deepEqual(broken.conditions, [{
    type: "Converged",
    status: "False",
    reason: "ReconcileFailed",
    message: "The last reconcile failed: dump failed: ETIMEDOUT",
    lastTransitionTime: T2,
  }]);
  assert.equal(broken.lastConvergedTime, T1);
  assert.equal(sameNodeStatus(ok, broken), false);
  const back = nodeStatus(broken, report(), { now: T3, ...OPTIONS });
  assert.equal(back.conditions?.[0]?.reason, "RulesApplied");
  assert.equal(back.lastConvergedTime, T3);
});

Deno.test("NodeStateWriter creates its object owned by the Node, retrying when the Node read fails", async () => {
  let nodeReads = 0;
  const created: Record<string, unknown>[] = [];
  const api: NodeStateApi = {
    nodes: {
      get: () => {
        if (nodeReads++ === 0) {
          return Promise.reject(
            new ApiError(
              "GET",
              "/api/v1/nodes/n1",
              503,
              "ServiceUnavailable",
              "busy",
            ),
          );
        }
        return Promise.resolve({ name: "n1", uid: "uid-1", labels: {} });
      },
    },
    nodeStates: {
      get: () => Promise.resolve(undefined), // no IPRuleNodeState yet
      create: (object: object) => {
        created.push(object as Record<string, unknown>);
        return Promise.resolve({ ...(object as IPRuleNodeState), status: {} });
      },
      mergePatch: (_name: string, patch: object) =>
        Promise.resolve({
          ...(patch as IPRuleNodeState),
          metadata: { name: "n1" },
        }),
    },
  };
  const writer = new NodeStateWriter(api, {
    nodeName: "n1",
    ...OPTIONS,
    log: new Logger({ sink: () => {} }),
  });
  // A passing API server error is no reason to create the object without its owner for good.
  await assert.rejects(writer.write(report()), /503/);
  assert.equal(created.length, 0);
  assert.equal(await writer.write(report()), true);
  assert.deepEqual(
    (created[0]?.metadata as Record<string, unknown>).ownerReferences,
    [
      { apiVersion: "v1", kind: "Node", name: "n1", uid: "uid-1" },
    ],
  );
});

/** The writer's API over memory objects: the node n1 exists, its IPRuleNodeState not yet. */
function memoryApi(
  nodeStates = new MemoryObjects("iprulenodestates", narrowIPRuleNodeState),
  options: Partial<NodeStateWriterOptions> = {},
) {
  const nodes = new MemoryObjects("nodes", narrowNode, {
    statusSubresource: false,
  });
  nodes.put({ metadata: { name: "n1", uid: "uid-1" } });
  const writer = new NodeStateWriter({ nodeStates, nodes }, {
    nodeName: "n1",
    ...OPTIONS,
    log: new Logger({ sink: () => {} }),
    now: () => Date.parse(T1),
    ...options,
  });
  return { nodeStates, writer };
}

Deno.test("NodeStateWriter writes the failed rules of a report into the status", async () => {
  const { nodeStates, writer } = memoryApi();
  assert.equal(await writer.write(failing), true);
  const status = (await nodeStates.get("n1"))?.status;
  assert.equal(status?.failedCount, 1);
  assert.deepEqual(status?.failedRules, failing.failed);
  assert.equal(status?.conditions?.[0]?.reason, "RulesFailed");
  // Fixed: the list is emptied on the API server too (a merge patch keeps what it omits).
  assert.equal(await writer.write(report()), true);
  assert.deepEqual((await nodeStates.get("n1"))?.status?.failedRules, []);
});

Deno.test("NodeStateWriter writes nothing when only timestamps would change", async () => {
  const { nodeStates, writer } = memoryApi();
  assert.equal(await writer.write(report()), true);
  const writes = nodeStates.writes.length;
  assert.equal(await writer.write(report()), false);
  assert.equal(nodeStates.writes.length, writes);
});

Deno.test("NodeStateWriter.run() writes the latest report in the background", async () => {
  const { nodeStates, writer } = memoryApi();
  const loop = new Background((signal) => writer.run(signal));
  const fiveWritten = new Promise<void>((resolve) => {
    nodeStates.onWrite = () => {
      if (nodeStates.raw("n1")?.status !== undefined) resolve();
    };
  });
  writer.update(failing);
  writer.update(report({ desired: 5, applied: 5 }));
  await fiveWritten;
  await loop.stop();
  const status = (await nodeStates.get("n1"))?.status;
  assert.deepEqual([status?.desiredRules, status?.failedCount], [5, 0]);
});

Deno.test("NodeStateWriter sets status.draining for a drain report; the next agent clears it", async () => {
  const { nodeStates, writer } = memoryApi();
  await writer.write(report());
  assert.equal(
    await writer.write(report({ desired: 0, applied: 0, draining: true })),
    true,
  );
  const status = (await nodeStates.get("n1"))?.status;
  assert.equal(status?.draining, true);
  assert.deepEqual(status?.conditions?.map((c) => [c.status, c.reason]), [[
    "True",
    "Drained",
  ]]);
  // A new agent on the node (selected again) starts from the object as it is and clears it.
  const next = memoryApi(nodeStates).writer;
  assert.equal(await next.write(report()), true);
  assert.equal((await nodeStates.get("n1"))?.status?.draining, undefined);
});

Deno.test("urgentChange(): convergence, the failed set and a drain are urgent; counts wait", () => {
  const at = (r: NodeReport, previous?: ReturnType<typeof nodeStatus>) =>
    nodeStatus(previous, r, { now: T1, ...OPTIONS });
  const base = at(report());
  const rows: [
    string,
    ReturnType<typeof nodeStatus> | undefined,
    NodeReport,
    boolean,
  ][] = [
    ["first status", undefined, report(), true],
    [
      "counts change while converged",
      base,
      report({ desired: 9, applied: 9 }),
      false,
    ],
    ["convergence lost", base, failing, true],
    [
      "reconcile failed",
      base,
      report({ converged: false, error: "dump failed" }),
      true,
    ],
    ["another rule fails", at(failing), {
      ...failing,
      failed: [...failing.failed, {
        rule: "from 10.0.0.2 lookup 100 priority 1000",
        error: "x",
      }],
    }, true],
    ["same rule, other error text", at(failing), {
      ...failing,
      failed: [{ rule: failing.failed[0]!.rule, error: "Another text" }],
    }, false],
    ["failure fixed", at(failing), report(), true],
    [
      "every rule removed (drain finished)",
      base,
      report({ desired: 0, applied: 0 }),
      true,
    ],
    [
      "first rule added",
      at(report({ desired: 0, applied: 0 })),
      report({ desired: 1, applied: 1 }),
      true,
    ],
    ["drained", base, report({ desired: 3, applied: 3, draining: true }), true],
    [
      "another agent version",
      { ...base, agentVersion: "1.2.2" },
      report(),
      true,
    ],
  ];
  for (const [name, written, next, urgent] of rows) {
    assert.equal(urgentChange(written, at(next, written)), urgent, name);
  }
});

/** A paced writer over memory objects on a manual clock, its run loop started. */
function pacedWriter(intervalMs = 10_000, random = () => 0.5) {
  const clock = new ManualClock();
  const wall = Date.parse(T1);
  const { nodeStates, writer } = memoryApi(undefined, {
    now: () => wall + clock.now(),
    pacing: { intervalMs },
    timer: clock,
    random,
  });
  const loop = new Background((signal) => writer.run(signal));
  const statusWrites = () => nodeStates.writes.filter((w) => w.subresource === "status");
  const status = () => nodeStates.raw("n1")?.status as IPRuleNodeStateStatus | undefined;
  return { clock, writer, statusWrites, status, [Symbol.asyncDispose]: () => loop.stop() };
}

Deno.test("NodeStateWriter: a burst of reports costs one write, an interval after it began", async () => {
  await using w = pacedWriter();
  for (let n = 1; n <= 200; n++) {
    w.writer.update(report({ desired: n, applied: n }));
    await w.clock.advance(10); // one reconcile every 10 ms: the burst lasts 2 s
  }
  assert.equal(
    w.statusWrites().length,
    1,
    "the writer's first report, at once",
  );
  assert.equal(w.status()?.desiredRules, 1);
  assert.equal(w.writer.pending, true);
  // 10 s after the second report (at 10 ms), the last state is written, once.
  await w.clock.advance(10_000 - 2000);
  assert.equal(w.statusWrites().length, 1);
  await w.clock.advance(10);
  assert.equal(w.statusWrites().length, 2);
  assert.deepEqual([w.status()?.desiredRules, w.status()?.appliedRules], [
    200,
    200,
  ]);
  assert.equal(w.writer.pending, false);
  await w.clock.advance(60_000);
  assert.equal(w.statusWrites().length, 2, "nothing more to write");
});

Deno.test("NodeStateWriter: the trailing write comes at the jittered window's end", async () => {
  for (const random of [0, 0.999]) {
    const end = Math.ceil(jitteredInterval(10_000, DEFAULT_JITTER, random)); // 9000, 10998
    await using w = pacedWriter(10_000, () => random);
    w.writer.update(report({ desired: 1, applied: 1 }));
    await w.clock.advance(0);
    w.writer.update(report({ desired: 2, applied: 2 }));
    await w.clock.advance(end - 1);
    assert.equal(
      w.statusWrites().length,
      1,
      `random ${random}: not before ${end} ms`,
    );
    await w.clock.advance(1);
    assert.equal(w.statusWrites().length, 2, `random ${random}: at ${end} ms`);
  }
});

Deno.test("NodeStateWriter: lost convergence is written one floor after the last write", async () => {
  await using w = pacedWriter();
  w.writer.update(report());
  await w.clock.advance(0);
  await w.clock.advance(300);
  w.writer.update(failing);
  await w.clock.advance(URGENT_FLOOR_MS - 300 - 1);
  assert.equal(w.statusWrites().length, 1, "not before the floor");
  await w.clock.advance(1);
  assert.equal(w.statusWrites().length, 2, "at the floor, not at the interval");
  assert.equal(w.status()?.failedCount, 1);
  assert.equal(w.status()?.conditions?.[0]?.status, "False");
  // Back to converged, long after: at once (the floor has passed).
  await w.clock.advance(5000);
  w.writer.update(report());
  await w.clock.advance(0);
  assert.equal(w.statusWrites().length, 3);
  assert.equal(w.status()?.conditions?.[0]?.status, "True");
});

Deno.test("NodeStateWriter: an urgent change in a window cuts the wait for the pending counts too", async () => {
  await using w = pacedWriter();
  w.writer.update(report({ desired: 5, applied: 5 }));
  await w.clock.advance(0);
  w.writer.update(report({ desired: 6, applied: 6 })); // due at 10 s
  await w.clock.advance(2000);
  assert.equal(w.statusWrites().length, 1);
  w.writer.update(report({ desired: 0, applied: 0 })); // the drain finished: urgent
  await w.clock.advance(0);
  assert.equal(w.statusWrites().length, 2);
  assert.deepEqual([w.status()?.desiredRules, w.status()?.appliedRules], [
    0,
    0,
  ]);
});

Deno.test("NodeStateWriter: times in the status are the report's, not the delayed write's", async () => {
  await using w = pacedWriter();
  w.writer.update(report({ desired: 1, applied: 1 }));
  await w.clock.advance(0);
  await w.clock.advance(3000);
  w.writer.update(report({ desired: 2, applied: 2 })); // converged again at T1 + 3 s
  await w.clock.advance(10_000);
  assert.equal(w.statusWrites().length, 2);
  assert.equal(w.status()?.lastConvergedTime, "2026-01-01T00:00:03Z");
});

Deno.test("NodeStateWriter: count changes do not hold back the end of a drain", async () => {
  await using w = pacedWriter();
  w.writer.update(report({ desired: 50, applied: 50 }));
  await w.clock.advance(30_000);
  // An uninstall: the configs go absent one by one, the node removes its rules.
  for (let n = 49; n > 0; n -= 7) {
    w.writer.update(report({ desired: n, applied: n }));
    await w.clock.advance(20);
  }
  assert.equal(w.statusWrites().length, 1, "count changes wait");
  w.writer.update(report({ desired: 0, applied: 0 }));
  await w.clock.advance(0);
  assert.equal(w.statusWrites().length, 2, "0 rules: written at once");
  assert.deepEqual([w.status()?.desiredRules, w.status()?.appliedRules], [
    0,
    0,
  ]);
});

Deno.test("NodeStateWriter: a restarted agent's count change waits; a new version is written at once", async () => {
  const nodeStates = new MemoryObjects(
    "iprulenodestates",
    narrowIPRuleNodeState,
  );
  const start = (version: string) => {
    const clock = new ManualClock();
    const { writer } = memoryApi(nodeStates, { version, timer: clock, random: () => 0.5 });
    return { clock, writer, loop: new Background((signal) => writer.run(signal)) };
  };
  const writes = () => nodeStates.writes.filter((w) => w.subresource === "status").length;
  const first = start("1.2.3");
  first.writer.update(report({ desired: 5, applied: 5 }));
  await first.clock.advance(0);
  assert.equal(writes(), 1, "no status yet: at once");
  await first.loop.stop();

  // Restarted, same version: its first report is what the object says; a count change waits.
  const again = start("1.2.3");
  again.writer.update(report({ desired: 5, applied: 5 }));
  await again.clock.advance(0);
  again.writer.update(report({ desired: 6, applied: 6 }));
  await again.clock.advance(9999);
  assert.equal(writes(), 1);
  await again.clock.advance(1);
  assert.equal(writes(), 2);
  await again.loop.stop();

  // Upgraded: the new version is written at once.
  const upgraded = start("1.3.0");
  upgraded.writer.update(report({ desired: 6, applied: 6 }));
  await upgraded.clock.advance(0);
  assert.equal(writes(), 3);
  assert.equal((nodeStates.raw("n1")?.status as IPRuleNodeStateStatus).agentVersion, "1.3.0");
  await upgraded.loop.stop();
});

const converged = (at: string) => ({
  type: "Converged",
  status: "True" as const,
  reason: "RulesApplied",
  message: "",
  lastTransitionTime: at,
});

Deno.test("nodeStatus() cuts a failed rule's text only beyond its limit", () => {
  const exact = "r".repeat(256);
  const long = "s".repeat(257);
  const status = nodeStatus(undefined, {
    ...failing,
    failed: [{ rule: exact, error: "e" }, { rule: long, error: "e" }],
  }, { now: T1, ...OPTIONS });
  assert.deepEqual(status.failedRules?.map((f) => f.rule), [
    exact,
    `${"s".repeat(255)}…`,
  ]);
});

Deno.test("nodeStatus() reads convergence from the Converged condition among others", () => {
  const other = {
    ...converged(T1),
    type: "Draining",
    status: "False" as const,
  };
  const still = nodeStatus(
    {
      desiredRules: 3,
      appliedRules: 3,
      lastConvergedTime: T1,
      conditions: [other, converged(T1)],
    },
    report(),
    { now: T2, ...OPTIONS },
  );
  assert.equal(
    still.lastConvergedTime,
    T1,
    "converged before, same counts: the time stays",
  );
  const otherTrue = { ...other, status: "True" as const };
  const notConverged = { ...converged(T1), status: "False" as const };
  for (
    const previous of [
      {
        desiredRules: 3,
        appliedRules: 3,
        lastConvergedTime: T1,
        conditions: [otherTrue, notConverged],
      },
      { desiredRules: 3, appliedRules: 3, lastConvergedTime: T1 }, // no conditions yet
    ]
  ) {
    assert.equal(
      nodeStatus(previous, report(), { now: T2, ...OPTIONS }).lastConvergedTime,
      T2,
    );
  }
});

Deno.test("nodeStatus() moves lastConvergedTime when either count changes while converged", () => {
  const previous = (desiredRules: number, appliedRules: number) => ({
    desiredRules,
    appliedRules,
    lastConvergedTime: T1,
    conditions: [converged(T1)],
  });
  for (const [d, a] of [[3, 2], [2, 3]] as const) {
    assert.equal(
      nodeStatus(previous(d, a), report(), { now: T2, ...OPTIONS })
        .lastConvergedTime,
      T2,
    );
  }
  assert.equal(
    nodeStatus(previous(3, 3), report(), { now: T2, ...OPTIONS })
      .lastConvergedTime,
    T1,
  );
});

Deno.test("nodeStatus() words drains and failures, and a report with an error never moves lastConvergedTime", () => {
  const condition = (r: NodeReport) => {
    const [c] = nodeStatus(undefined, r, { now: T1, ...OPTIONS }).conditions ??
      [];
    return [c?.status, c?.reason, c?.message];
  };
  assert.deepEqual(
    condition(report({ desired: 0, applied: 0, draining: true })),
    [
      "True",
      "Drained",
      "The node was drained: the agent removed its rules",
    ],
  );
  assert.deepEqual(
    condition({ ...failing, converged: false, draining: true }),
    [
      "False",
      "DrainFailed",
      "The node was drained, but 1 rule(s) could not be removed",
    ],
  );
  assert.deepEqual(condition(failing), [
    "False",
    "RulesFailed",
    "1 rule(s) failed; 2 of 3 desired rule(s) are in the kernel",
  ]);
  const withError = nodeStatus(undefined, report({ error: "dump failed" }), {
    now: T1,
    ...OPTIONS,
  });
  assert.equal("lastConvergedTime" in withError, false);
  assert.equal(
    "lastConvergedTime" in
      nodeStatus(undefined, failing, { now: T1, ...OPTIONS }),
    false,
  );
});

Deno.test("sameNodeStatus() sees each field, and absent lists equal empty ones", () => {
  const base = nodeStatus(undefined, report(), { now: T1, ...OPTIONS });
  assert.equal(sameNodeStatus(base, { ...base }), true);
  assert.equal(
    sameNodeStatus({ ...base, failedRules: [] }, {
      ...base,
      failedRules: undefined as never,
    }),
    true,
  );
  const noConditions = { ...base, conditions: [] };
  assert.equal(
    sameNodeStatus(noConditions, { ...base, conditions: undefined as never }),
    true,
  );
  for (
    const change of [
      { desiredRules: 4 },
      { appliedRules: 2 },
      { failedCount: 1 },
      { draining: true as const },
      { lastConvergedTime: undefined as never },
      { protocol: 7 },
    ]
  ) {
    assert.equal(
      sameNodeStatus(base, { ...base, ...change }),
      false,
      JSON.stringify(change),
    );
  }
});

Deno.test("urgentChange() reads the Converged condition among others, and missing fields as empty", () => {
  const status = (
    extra: Partial<IPRuleNodeStateStatus>,
  ): IPRuleNodeStateStatus => ({
    desiredRules: 3,
    appliedRules: 3,
    agentVersion: "1.2.3",
    protocol: 201,
    ...extra,
  });
  const other = { ...converged(T1), type: "Draining", status: "True" as const };
  const notConverged = {
    ...converged(T1),
    status: "False" as const,
    reason: "RulesFailed",
  };
  assert.equal(urgentChange(status({}), status({ conditions: [] })), false);
  assert.equal(
    urgentChange(
      status({ conditions: [other, converged(T1)] }),
      status({ conditions: [other, notConverged] }),
    ),
    true,
  );
  assert.equal(
    urgentChange(status({}), status({ failedCount: 0, failedRules: [] })),
    false,
  );
  const failedA = status({
    failedCount: 1,
    failedRules: [{ rule: "from 10.0.0.1", error: "x" }],
  });
  const failedB = status({
    failedCount: 1,
    failedRules: [{ rule: "from 10.0.0.2", error: "x" }],
  });
  assert.equal(urgentChange(failedA, failedB), true, "another rule fails");
  assert.equal(
    urgentChange(status({ draining: true }), status({})),
    true,
    "a new agent clears it",
  );
  assert.equal(urgentChange(status({}), status({ protocol: 7 })), true);
});

/** The writer's API over memory objects, counting reads and creates, with a log. */
function countedApi(
  node: { uid?: string } | "missing" | ApiError = { uid: "uid-1" },
) {
  const nodeStates = new MemoryObjects(
    "iprulenodestates",
    narrowIPRuleNodeState,
  );
  const counts = { gets: 0, creates: 0 };
  const logs: Record<string, unknown>[] = [];
  const api: NodeStateApi = {
    nodes: {
      get: () => {
        if (node instanceof ApiError) return Promise.reject(node);
        if (node === "missing") return Promise.resolve(undefined);
        return Promise.resolve({ name: "n1", labels: {}, ...node });
      },
    },
    nodeStates: {
      get: (name) => (counts.gets++, nodeStates.get(name)),
      create: (object) => (counts.creates++, nodeStates.create(object)),
      mergePatch: (name, patch, options) => nodeStates.mergePatch(name, patch, options),
    },
  };
  const clock = new ManualClock();
  const writer = new NodeStateWriter(api, {
    nodeName: "n1",
    ...OPTIONS,
    log: new Logger({
      level: "debug",
      sink: (line) => logs.push(JSON.parse(line)),
    }),
    now: () => Date.parse(T1),
    timer: clock,
  });
  const line = (msg: string) => logs.find((l) => l.msg === msg);
  return { nodeStates, counts, logs, line, writer, clock };
}

Deno.test("NodeStateWriter creates its object with its spec, counts and logs each write", async () => {
  const { nodeStates, counts, line, writer } = countedApi();
  assert.equal(writer.pending, false);
  assert.equal(await writer.write(report()), true);
  const raw = nodeStates.raw("n1") as {
    spec?: unknown;
    metadata: Record<string, unknown>;
  };
  assert.deepEqual(raw.spec, { nodeName: "n1" });
  assert.equal(writer.writes, 2, "create and status");
  assert.deepEqual(counts, { gets: 1, creates: 1 });
  assert.deepEqual(
    [
      line("IPRuleNodeState created")?.level,
      line("IPRuleNodeState created")?.owner,
    ],
    ["info", "Node/n1"],
  );
  const updated = line("IPRuleNodeState status updated");
  assert.deepEqual(
    [
      updated?.level,
      updated?.iprulenodestate,
      updated?.desired,
      updated?.applied,
      updated?.failed,
    ],
    ["debug", "n1", 3, 3, 0],
  );
  // The object exists now: the next write reads and creates nothing.
  assert.equal(await writer.write(report({ desired: 4, applied: 4 })), true);
  assert.deepEqual(counts, { gets: 1, creates: 1 });
  assert.equal(writer.writes, 3);
});

Deno.test("NodeStateWriter creates its object without an owner when the Node is missing, has no uid or is forbidden", async () => {
  const cases: [Parameters<typeof countedApi>[0], string][] = [
    ["missing", "Node not found; IPRuleNodeState created without owner"],
    [{}, "Node not found; IPRuleNodeState created without owner"],
    [
      new ApiError("GET", "/api/v1/nodes/n1", 403, "Forbidden", "no"),
      "Node unreadable; IPRuleNodeState created without owner",
    ],
    [
      new ApiError("GET", "/api/v1/nodes/n1", 401, "Unauthorized", "no"),
      "Node unreadable; IPRuleNodeState created without owner",
    ],
  ];
  for (const [node, msg] of cases) {
    const { nodeStates, line, writer } = countedApi(node);
    assert.equal(await writer.write(report()), true, msg);
    const meta = (nodeStates.raw("n1") as { metadata: Record<string, unknown> }).metadata;
    assert.equal("ownerReferences" in meta, false, msg);
    assert.deepEqual([line(msg)?.level, line(msg)?.node], ["warn", "n1"], msg);
    assert.equal(line("IPRuleNodeState created")?.owner, "none");
  }
});

Deno.test("NodeStateWriter uses the object another agent created meanwhile, and gives up when it is gone again", async () => {
  const conflict = new ApiError("POST", "/x", 409, "AlreadyExists", "exists");
  const existing = { metadata: { name: "n1" }, spec: { nodeName: "n1" } };
  let gets = 0;
  const api = (second: unknown, createError: ApiError): NodeStateApi => ({
    nodes: { get: () => Promise.resolve({ name: "n1", uid: "u", labels: {} }) },
    nodeStates: {
      get: () =>
        Promise.resolve(
          (gets++ === 0 ? undefined : second) as IPRuleNodeState | undefined,
        ),
      create: () => Promise.reject(createError),
      mergePatch: (_n, patch) =>
        Promise.resolve(
          { ...existing, ...(patch as object) } as IPRuleNodeState,
        ),
    },
  });
  const log = new Logger({ sink: () => {} });
  const raced = new NodeStateWriter(api(existing, conflict), {
    nodeName: "n1",
    ...OPTIONS,
    log,
  });
  assert.equal(await raced.write(report()), true);
  assert.equal(raced.writes, 1, "the status only: it created nothing");
  gets = 0;
  const gone = new NodeStateWriter(api(undefined, conflict), {
    nodeName: "n1",
    ...OPTIONS,
    log,
  });
  await assert.rejects(gone.write(report()), (e: unknown) => e === conflict);
  gets = 0;
  const denied = new ApiError("POST", "/x", 403, "Forbidden", "no");
  const refused = new NodeStateWriter(api(existing, denied), {
    nodeName: "n1",
    ...OPTIONS,
    log,
  });
  await assert.rejects(refused.write(report()), (e: unknown) => e === denied);
});

Deno.test("NodeStateWriter keeps the times of the object it finds (an earlier agent's)", async () => {
  const { nodeStates, writer, counts } = countedApi();
  nodeStates.put({
    metadata: { name: "n1" },
    spec: { nodeName: "n1" },
    status: {
      desiredRules: 3,
      appliedRules: 3,
      lastConvergedTime: T0,
      conditions: [converged(T0)],
    },
  });
  writer.update(report()); // before the object was read
  assert.equal(writer.pending, true);
  assert.equal(
    await writer.write(report({ failed: [], converged: true })),
    true,
  ); // the version is new
  assert.equal(
    (nodeStates.raw("n1")?.status as IPRuleNodeStateStatus).lastConvergedTime,
    T0,
  );
  assert.equal(writer.pending, false);
  assert.equal(counts.creates, 0, "found, not created");
});

Deno.test("NodeStateWriter recreates its object when someone deleted it", async () => {
  const { nodeStates, writer } = countedApi();
  assert.equal(await writer.write(report()), true);
  nodeStates.objects.clear();
  await assert.rejects(writer.write(report({ desired: 4, applied: 4 })), /404/);
  assert.equal(await writer.write(report({ desired: 5, applied: 5 })), true);
  assert.equal(
    (nodeStates.raw("n1")?.status as IPRuleNodeStateStatus).desiredRules,
    5,
  );
});

Deno.test("NodeStateWriter.run() waits for a report before it reads or creates anything", async () => {
  const { nodeStates, counts, writer } = countedApi();
  const stop = new AbortController();
  const running = writer.run(stop.signal);
  for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(counts, { gets: 0, creates: 0 });
  const written = new Promise<void>((
    resolve,
  ) => (nodeStates.onWrite = (w) => w.subresource === "status" && resolve()));
  writer.update(report());
  await written;
  stop.abort();
  await running;
  assert.equal(
    (nodeStates.raw("n1")?.status as IPRuleNodeStateStatus).desiredRules,
    3,
  );
});

Deno.test("NodeStateWriter.run() idles on the real timer without waking up: no sleep that setTimeout cannot hold", async () => {
  // setTimeout fires at once for a delay above MAX_TIMER_MS (Infinity too, with a warning): an
  // idle wait put on the timer would make the writer spin. The timer is the real one, watched.
  const sleeps: number[] = [];
  const timer: Timer = {
    now: REAL_TIMER.now,
    sleep: (ms, signal) => (sleeps.push(ms), REAL_TIMER.sleep(ms, signal)),
  };
  const { nodeStates, writer } = memoryApi(undefined, { timer, pacing: { intervalMs: 0 } });
  const loop = new Background((signal) => writer.run(signal));
  for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(sleeps, [], "waiting for the first report");
  const written = new Promise<void>((resolve) =>
    nodeStates.onWrite = (w) => w.subresource === "status" && resolve()
  );
  writer.update(report());
  await written;
  for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 0));
  await loop.stop();
  assert.equal(nodeStates.writes.filter((w) => w.subresource === "status").length, 1);
  assert.deepEqual(sleeps.filter((ms) => ms > MAX_TIMER_MS), [], "idle after the write");
});

Deno.test("NodeStateWriter.run() retries failed writes with growing backoff, logged, and recreates a deleted object", async () => {
  const { nodeStates, logs, writer, clock } = countedApi();
  await writer.write(report());
  const unavailable = new ApiError(
    "PATCH",
    "/x",
    503,
    "ServiceUnavailable",
    "busy",
  );
  let failures = 2;
  nodeStates.fail = (
    w,
  ) => (w.subresource === "status" && failures-- > 0 ? unavailable : undefined);
  const stop = new AbortController();
  const running = writer.run(stop.signal);
  writer.update(report({ desired: 0, applied: 0 })); // urgent: a drain finished
  const warnings = () => logs.filter((l) => l.msg === "IPRuleNodeState write failed");
  while (warnings().length < 2 || clock.nextWake === undefined) {
    await clock.advance(100);
  }
  const [first, second] = warnings().map((l) => l.delayMs as number);
  assert.ok(first! >= 125 && first! <= 250, `first retry after ${first} ms`);
  assert.ok(
    second! >= 250 && second! <= 500,
    `second retry after ${second} ms`,
  );
  assert.equal(warnings()[0]?.iprulenodestate, "n1");
  await clock.advance(1000);
  assert.equal(
    (nodeStates.raw("n1")?.status as IPRuleNodeStateStatus).desiredRules,
    0,
  );
  // Deleted behind its back: the next write meets 404, and the retry creates it again.
  const before = warnings().length;
  nodeStates.objects.clear();
  writer.update(report({ desired: 2, applied: 2 }));
  for (let i = 0; i < 10 && nodeStates.raw("n1")?.status === undefined; i++) {
    await clock.advance(30_000);
  }
  assert.equal(
    (nodeStates.raw("n1")?.status as IPRuleNodeStateStatus | undefined)
      ?.desiredRules,
    2,
  );
  assert.equal(
    warnings().length,
    before + 1,
    "the 404, and no failure after it",
  );
  stop.abort();
  await running;
});

Deno.test("NodeStateWriter.run() writes nothing and logs no failure once stopped", async () => {
  // Stopped while it reads the Node (before its first write): no status write follows.
  const during = countedApi();
  const stop = new AbortController();
  const get = during.nodeStates.get.bind(during.nodeStates);
  let reads = 0;
  during.nodeStates.get = (name) => (++reads === 1 && stop.abort(), get(name));
  const running = during.writer.run(stop.signal);
  during.writer.update(report());
  await running;
  assert.equal(
    during.nodeStates.writes.filter((w) => w.subresource === "status").length,
    0,
  );
  // Stopped while a write is on its way, which then fails: no warning, no retry.
  const failing = countedApi();
  await failing.writer.write(report());
  const halt = new AbortController();
  failing.nodeStates.fail = () => {
    halt.abort();
    return new ApiError("PATCH", "/x", 503, "ServiceUnavailable", "busy");
  };
  const loop = failing.writer.run(halt.signal);
  failing.writer.update(report({ desired: 0, applied: 0 }));
  await failing.clock.advance(1000);
  await loop;
  assert.deepEqual(failing.logs.filter((l) => l.level === "warn"), []);
});

Deno.test("NodeStateWriter computes a report against the one still waiting to be written", async () => {
  const nodeStates = new MemoryObjects(
    "iprulenodestates",
    narrowIPRuleNodeState,
  );
  const nodes = new MemoryObjects("nodes", narrowNode, {
    statusSubresource: false,
  });
  let wall = Date.parse(T1);
  const writer = new NodeStateWriter({ nodeStates, nodes }, {
    nodeName: "n1",
    ...OPTIONS,
    log: new Logger({ sink: () => {} }),
    now: () => wall,
  });
  await writer.write(failing); // written: not converged
  wall = Date.parse(T2);
  writer.update(report({ applied: 3 })); // converged at T2, waiting for its write
  wall = Date.parse(T3);
  assert.equal(await writer.write(report({ applied: 3 })), true); // the same: still since T2
  assert.equal(
    (nodeStates.raw("n1")?.status as IPRuleNodeStateStatus).lastConvergedTime,
    T2,
  );
});

Deno.test("NodeStateWriter compares later reports with the status the API server returned", async () => {
  const nodeStates = new MemoryObjects("iprulenodestates", narrowIPRuleNodeState);
  const nodes = new MemoryObjects("nodes", narrowNode, { statusSubresource: false });
  // A server that answers with another agent version than sent (say, a racing older agent's).
  const api: NodeStateApi = {
    nodes,
    nodeStates: {
      get: (name) => nodeStates.get(name),
      create: (object) => nodeStates.create(object),
      mergePatch: async (name, patch, options) => {
        const written = await nodeStates.mergePatch(name, patch, options);
        return { ...written, status: { ...written.status, agentVersion: "0.0.1" } };
      },
    },
  };
  const writer = new NodeStateWriter(api, {
    nodeName: "n1",
    ...OPTIONS,
    log: new Logger({ sink: () => {} }),
    now: () => Date.parse(T1),
  });
  assert.equal(await writer.write(report()), true);
  assert.equal(await writer.write(report()), true, "the server holds another version: write again");
});

Deno.test("NodeStateWriter.run() returns when stopped while reading an object that needs no write", async () => {
  const { nodeStates, writer } = countedApi();
  // The object already says what the report will.
  nodeStates.put({
    metadata: { name: "n1" },
    spec: { nodeName: "n1" },
    status: nodeStatus(undefined, report(), { now: T1, ...OPTIONS }),
  });
  const stop = new AbortController();
  const get = nodeStates.get.bind(nodeStates);
  nodeStates.get = (name) => (stop.abort(), get(name));
  const running = writer.run(stop.signal);
  writer.update(report());
  await running; // hangs if it waited for a report after the stop
  assert.equal(writer.pending, false);
});

Deno.test("NodeStateWriter: a report that changes nothing opens no pacing window", async () => {
  await using w = pacedWriter();
  w.writer.update(report({ desired: 1, applied: 1 }));
  await w.clock.advance(20_000); // written at once; its window long over
  assert.equal(w.statusWrites().length, 1);
  w.writer.update(report({ desired: 1, applied: 1 })); // the same: nothing to write
  await w.clock.advance(5000);
  w.writer.update(report({ desired: 2, applied: 2 })); // a count change waits an interval from now
  await w.clock.advance(9000);
  assert.equal(w.statusWrites().length, 1, "an interval after the change, not after the no-op");
  await w.clock.advance(1010);
  assert.equal(w.statusWrites().length, 2);
});
