import assert from "node:assert/strict";
import type { Toleration } from "../api/types.ts";
import { daemonPodSchedules, daemonPodStays, type Taint, toleratesTaint } from "./tolerations.ts";

const gpu: Taint = { key: "nvidia.com/gpu", value: "true", effect: "NoSchedule" };

Deno.test("toleratesTaint() follows Kubernetes' matching of key, operator, value and effect", () => {
  const cases: [Toleration, Taint, boolean][] = [
    [{ key: "nvidia.com/gpu", operator: "Exists" }, gpu, true],
    [{ key: "nvidia.com/gpu", operator: "Equal", value: "true" }, gpu, true],
    [{ key: "nvidia.com/gpu", value: "true" }, gpu, true], // Equal is the default
    [{ key: "nvidia.com/gpu", operator: "Equal", value: "false" }, gpu, false],
    [{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoExecute" }, gpu, false],
    [{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }, gpu, true],
    [{ key: "other", operator: "Exists" }, gpu, false],
    [{ operator: "Exists" }, gpu, true], // empty key + Exists tolerates everything
    [{ operator: "Exists", effect: "NoExecute" }, gpu, false],
    [{ value: "true" }, gpu, false], // empty key needs Exists
    [{ key: "a", operator: "Equal" }, { key: "a", effect: "NoExecute" }, true], // both values empty
  ];
  for (const [toleration, taint, expected] of cases) {
    assert.equal(
      toleratesTaint(toleration, taint),
      expected,
      `${JSON.stringify(toleration)} vs ${JSON.stringify(taint)}`,
    );
  }
});

Deno.test("daemonPodSchedules() needs every NoSchedule and NoExecute taint tolerated", () => {
  assert.equal(daemonPodSchedules(undefined, undefined), true);
  assert.equal(daemonPodSchedules(undefined, [gpu]), false);
  assert.equal(daemonPodSchedules([{ key: "nvidia.com/gpu", operator: "Exists" }], [gpu]), true);
  // PreferNoSchedule only steers the scheduler.
  assert.equal(daemonPodSchedules(undefined, [{ ...gpu, effect: "PreferNoSchedule" }]), true);
  const dedicated: Taint = { key: "dedicated", value: "db", effect: "NoExecute" };
  assert.equal(
    daemonPodSchedules([{ key: "nvidia.com/gpu", operator: "Exists" }], [gpu, dedicated]),
    false,
  );
  // The DaemonSet controller's own tolerations: conditions and cordons.
  for (const key of ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"]) {
    assert.equal(daemonPodSchedules(undefined, [{ key, effect: "NoExecute" }]), true, key);
  }
  for (
    const key of [
      "node.kubernetes.io/unschedulable",
      "node.kubernetes.io/disk-pressure",
      "node.kubernetes.io/memory-pressure",
      "node.kubernetes.io/pid-pressure",
      "node.kubernetes.io/network-unavailable",
    ]
  ) assert.equal(daemonPodSchedules(undefined, [{ key, effect: "NoSchedule" }]), true, key);
  // ... only with their own effect; a new node's not-ready NoSchedule taint keeps new pods away.
  for (
    const taint of [
      { key: "node.kubernetes.io/unschedulable", effect: "NoExecute" },
      { key: "node.kubernetes.io/not-ready", effect: "NoSchedule" },
    ]
  ) assert.equal(daemonPodSchedules(undefined, [taint]), false, taint.key);
});

Deno.test("daemonPodStays() is evicted by an untolerated NoExecute taint only", () => {
  assert.equal(daemonPodStays(undefined, [gpu]), true);
  assert.equal(
    daemonPodStays(undefined, [{ key: "node.kubernetes.io/not-ready", effect: "NoSchedule" }]),
    true,
  );
  assert.equal(
    daemonPodStays(undefined, [{ key: "dedicated", value: "db", effect: "NoExecute" }]),
    false,
  );
  assert.equal(
    daemonPodStays([{ key: "dedicated", operator: "Equal", value: "db" }], [{
      key: "dedicated",
      value: "db",
      effect: "NoExecute",
    }]),
    true,
  );
  assert.equal(
    daemonPodStays(undefined, [{ key: "node.kubernetes.io/unreachable", effect: "NoExecute" }]),
    true,
  );
});
