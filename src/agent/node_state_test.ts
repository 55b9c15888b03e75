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
  nodeStatus,
  sameNodeStatus,
} from "./node_state.ts";

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
  failed: [{ rule: "from 10.0.0.1 lookup 100 priority 1000", error: "Invalid" }],
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
  const more = nodeStatus(first, report({ desired: 4, applied: 4 }), { now: T2, ...OPTIONS });
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
  assert.equal(status.failedRules?.[0]?.rule, "from 10.0.0.1 lookup 100 priority 1000");
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
      other({ failedRules: [{ rule: failing.failed[0]!.rule, error: "Other" }] }),
    ),
    false,
  );
  assert.equal(sameNodeStatus(undefined, base), false);
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
            new ApiError("GET", "/api/v1/nodes/n1", 503, "ServiceUnavailable", "busy"),
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
        Promise.resolve({ ...(patch as IPRuleNodeState), metadata: { name: "n1" } }),
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
  assert.deepEqual((created[0]?.metadata as Record<string, unknown>).ownerReferences, [
    { apiVersion: "v1", kind: "Node", name: "n1", uid: "uid-1" },
  ]);
});

/** The writer's API over memory objects: the node n1 exists, its IPRuleNodeState not yet. */
function memoryApi(nodeStates = new MemoryObjects("iprulenodestates", narrowIPRuleNodeState)) {
  const nodes = new MemoryObjects("nodes", narrowNode, { statusSubresource: false });
  nodes.put({ metadata: { name: "n1", uid: "uid-1" } });
  const writer = new NodeStateWriter({ nodeStates, nodes }, {
    nodeName: "n1",
    ...OPTIONS,
    log: new Logger({ sink: () => {} }),
    now: () => Date.parse(T1),
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
  const stop = new AbortController();
  const running = writer.run(stop.signal);
  const fiveWritten = new Promise<void>((resolve) => {
    nodeStates.onWrite = () => {
      if (nodeStates.raw("n1")?.status !== undefined) resolve();
    };
  });
  writer.update(failing);
  writer.update(report({ desired: 5, applied: 5 }));
  await fiveWritten;
  stop.abort();
  await running;
  const status = (await nodeStates.get("n1"))?.status;
  assert.deepEqual([status?.desiredRules, status?.failedCount], [5, 0]);
});

Deno.test("NodeStateWriter sets status.draining for a drain report; the next agent clears it", async () => {
  const { nodeStates, writer } = memoryApi();
  await writer.write(report());
  assert.equal(await writer.write(report({ desired: 0, applied: 0, draining: true })), true);
  const status = (await nodeStates.get("n1"))?.status;
  assert.equal(status?.draining, true);
  assert.deepEqual(status?.conditions?.map((c) => [c.status, c.reason]), [["True", "Drained"]]);
  // A new agent on the node (selected again) starts from the object as it is and clears it.
  const next = memoryApi(nodeStates).writer;
  assert.equal(await next.write(report()), true);
  assert.equal((await nodeStates.get("n1"))?.status?.draining, undefined);
});
