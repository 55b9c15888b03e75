/**
 * The agent's IPRuleNodeState writer against a real kube-apiserver + etcd, with the agent's own
 * RBAC identity (deploy/rbac.yaml): what it writes is what the API server returns, status
 * `draining` included, and how often it writes is what a watch of the object sees (paced
 * scenarios run the writer on a manual clock: when it writes is decided by the clock, never by
 * how fast this machine is). Each scenario uses its own node name; one control plane serves the
 * file.
 */
import assert from "node:assert/strict";
import { objectClient } from "../../src/api/clients.ts";
import type { IPRuleNodeStateStatus } from "../../src/api/types.ts";
import {
  type NodeReport,
  NodeStateWriter,
  type NodeStateWriterOptions,
} from "../../src/agent/node_state.ts";
import { KubeClient } from "../../src/k8s/client.ts";
import { RESOURCES } from "../../src/k8s/resources.ts";
import { Logger } from "../../src/log.ts";
import { Background } from "../support/background.ts";
import { startControlPlane } from "../support/controlplane.ts";
import { SHARED, sharedPart } from "../support/shared.ts";
import { ManualClock } from "../support/manual_clock.ts";
import { eventually } from "../support/process.ts";
import { URGENT_FLOOR_MS } from "../../src/write_pacer.ts";

const OK: NodeReport = { desired: 2, applied: 2, failed: [], converged: true };

/** The file's control plane, started by the first test that runs (alone or not). */
const controlPlane = sharedPart(async () => {
  const cp = await startControlPlane();
  await cp.kubectl(["apply", "-f", "deploy/namespace.yaml", "-f", "deploy/rbac.yaml"]);
  return cp;
});

/** A node, the agent's writer for it, and the admin's view of its IPRuleNodeState. */
async function node(name: string) {
  const cp = await controlPlane();
  const admin = await KubeClient.connect({ kubeconfig: cp.kubeconfig("admin") });
  const agent = await KubeClient.connect({ kubeconfig: cp.kubeconfig("agent") });
  await admin.create(RESOURCES.nodes, { metadata: { name } });
  const writer = (paced: Partial<NodeStateWriterOptions> = {}) =>
    new NodeStateWriter({
      nodeStates: objectClient(agent, "ipRuleNodeStates"),
      nodes: objectClient(agent, "nodes"),
    }, {
      nodeName: name,
      protocol: 201,
      version: "test",
      log: new Logger({ sink: () => {} }),
      ...paced,
    });
  const status = async () =>
    ((await admin.get(RESOURCES.ipRuleNodeStates, name)) as { status?: IPRuleNodeStateStatus })
      ?.status;
  const stopWatch = new AbortController();
  /** Every status the API server sent a watch of this object, from its creation on. */
  const seen: IPRuleNodeStateStatus[] = [];
  let opened: () => void = () => {};
  const open = new Promise<void>((resolve) => (opened = resolve));
  const watching = (async () => {
    const path = "/apis/api.operator.brtrm.dev/v1alpha1/iprulenodestates";
    const list = await admin.request("GET", path, {
      query: { fieldSelector: `metadata.name=${name}` },
    });
    for await (
      const event of admin.watch(
        path,
        {
          fieldSelector: `metadata.name=${name}`,
          resourceVersion: (list.metadata as { resourceVersion: string }).resourceVersion,
        },
        stopWatch.signal,
        opened,
      )
    ) {
      const object = event.object as { status?: IPRuleNodeStateStatus };
      if (event.type === "MODIFIED" && object.status) seen.push(object.status);
    }
  })().catch(() => {});
  await Promise.race([open, watching]);
  return {
    writer,
    status,
    /** Status writes the watch saw (the creation is not one). */
    seen,
    async [Symbol.asyncDispose]() {
      stopWatch.abort();
      await watching;
      await admin.delete(RESOURCES.ipRuleNodeStates, name);
      await admin.delete(RESOURCES.nodes, name);
      admin.close();
      agent.close();
    },
  };
}

Deno.test(
  "NodeStateWriter on the API server: failed rules are listed, then cleared",
  SHARED,
  async () => {
    await using n = await node("writer-failed");
    const writer = n.writer();
    const failed = [{ rule: "from 10.0.0.1 lookup 100 priority 1000", error: "EINVAL" }];
    await writer.write({ desired: 2, applied: 1, failed, converged: false });
    const bad = await n.status();
    assert.deepEqual([bad?.failedCount, bad?.failedRules], [1, failed]);
    assert.equal(bad?.conditions?.[0]?.reason, "RulesFailed");
    await writer.write(OK);
    const good = await n.status();
    assert.deepEqual([good?.failedCount, good?.failedRules], [0, []]);
  },
);

Deno.test(
  "NodeStateWriter on the API server: a drain sets status.draining; the next agent clears it",
  SHARED,
  async () => {
    await using n = await node("writer-drained");
    await n.writer().write(OK);
    assert.equal((await n.status())?.draining, undefined);

    await n.writer().write({ desired: 0, applied: 0, failed: [], converged: true, draining: true });
    const drained = await n.status();
    assert.equal(drained?.draining, true);
    assert.deepEqual([drained?.desiredRules, drained?.appliedRules], [0, 0]);
    assert.deepEqual(
      drained?.conditions?.map((c) => [c.type, c.status, c.reason]),
      [["Converged", "True", "Drained"]],
    );

    // The node is selected again: a new agent's first report removes the mark.
    await n.writer().write(OK);
    const back = await n.status();
    assert.equal(back?.draining, undefined);
    assert.equal(back?.conditions?.[0]?.reason, "RulesApplied");
  },
);

Deno.test(
  "NodeStateWriter on the API server: a 200-report burst is two status writes, the last state",
  SHARED,
  async () => {
    await using n = await node("writer-burst");
    const clock = new ManualClock();
    // The default pacing: 10 s, ±10 % (drawn here at its middle).
    const writer = n.writer({ timer: clock, random: () => 0.5 });
    const loop = new Background((signal) => writer.run(signal));
    try {
      for (let rules = 1; rules <= 200; rules++) {
        writer.update({ ...OK, desired: rules, applied: rules });
        await clock.advance(10); // a reconcile every 10 ms: the burst lasts 2 s
      }
      await eventually("the leading write", () => n.seen.length >= 1);
      await clock.advance(10_000);
      await eventually("the trailing write", () => n.seen.at(-1)?.desiredRules === 200);
      await eventually("nothing pending", () => !writer.pending);
    } finally {
      await loop.stop();
    }
    assert.ok(n.seen.length <= 2, `${n.seen.length} status writes: ${JSON.stringify(n.seen)}`);
    const last = await n.status();
    assert.deepEqual([last?.desiredRules, last?.appliedRules], [200, 200]);
  },
);

Deno.test(
  "NodeStateWriter on the API server: failed rules and lost convergence show one floor after " +
    "the last write, not an interval",
  SHARED,
  async () => {
    await using n = await node("writer-urgent");
    const clock = new ManualClock();
    // An hour's interval: only an urgent change can be written during this test.
    const writer = n.writer({ timer: clock, pacing: { intervalMs: 3_600_000 } });
    const loop = new Background((signal) => writer.run(signal));
    const failed = [{ rule: "from 10.0.0.1 lookup 100 priority 1000", error: "EINVAL" }];
    const steps: [string, NodeReport, (s: IPRuleNodeStateStatus) => boolean][] = [
      [
        "a failed rule",
        { desired: 2, applied: 1, failed, converged: false },
        (s) => s.failedCount === 1 && s.conditions?.[0]?.reason === "RulesFailed",
      ],
      ["converged again", OK, (s) => s.failedCount === 0 && s.conditions?.[0]?.status === "True"],
      [
        "a failed reconcile",
        { ...OK, converged: false, error: "dump failed" },
        (s) => s.conditions?.[0]?.reason === "ReconcileFailed",
      ],
    ];
    try {
      writer.update({ ...OK, desired: 1, applied: 1 });
      await eventually("the first write", () => n.seen.length === 1);
      // A count change waits for the end of the hour (±10 %).
      writer.update(OK);
      await clock.advance(0);
      assert.ok((clock.nextWake ?? 0) >= 0.9 * 3_600_000, `${clock.nextWake}`);
      let writes = 1;
      for (const [what, report, shows] of steps) {
        // The clock stands still between writes: the last one was made at this time.
        const wroteAt = clock.now();
        writer.update(report);
        await clock.advance(0);
        assert.equal(clock.nextWake, wroteAt + URGENT_FLOOR_MS, `${what}: due at the floor`);
        await clock.advance(URGENT_FLOOR_MS);
        await eventually(what, () => n.seen.length === writes + 1 && shows(n.seen.at(-1)!));
        writes++;
        await eventually(`${what}: nothing pending`, () => !writer.pending).catch((e) => {
          console.log(JSON.stringify(n.seen, null, 1), clock.now(), clock.nextWake);
          throw e;
        });
      }
    } finally {
      await loop.stop();
    }
    assert.equal(n.seen.length, 1 + steps.length, "one write per urgent change, no other");
  },
);
