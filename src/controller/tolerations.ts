/**
 * Which nodes the agent DaemonSet runs on given their taints (pure), so the Agent's status waits
 * only for nodes that get an agent, and a node whose taints evict the agent is drained like one
 * that left the node selector. Kubernetes' own rules, restated: client-go has no
 * TypeScript counterpart and client-node does not implement scheduling predicates.
 */
import type { Taint, Toleration } from "../api/types.ts";

export type { Taint };

/**
 * Tolerations the DaemonSet controller adds to every daemon pod (pkg/controller/daemon/util):
 * node conditions must not evict or block a node agent; network-unavailable because the agent
 * runs in the host network.
 */
export const DAEMON_TOLERATIONS: readonly Toleration[] = [
  { key: "node.kubernetes.io/not-ready", operator: "Exists", effect: "NoExecute" },
  { key: "node.kubernetes.io/unreachable", operator: "Exists", effect: "NoExecute" },
  { key: "node.kubernetes.io/disk-pressure", operator: "Exists", effect: "NoSchedule" },
  { key: "node.kubernetes.io/memory-pressure", operator: "Exists", effect: "NoSchedule" },
  { key: "node.kubernetes.io/pid-pressure", operator: "Exists", effect: "NoSchedule" },
  { key: "node.kubernetes.io/unschedulable", operator: "Exists", effect: "NoSchedule" },
  { key: "node.kubernetes.io/network-unavailable", operator: "Exists", effect: "NoSchedule" },
];

/** Whether one toleration tolerates one taint (core/v1 Toleration.ToleratesTaint). */
export function toleratesTaint(toleration: Toleration, taint: Taint): boolean {
  if (toleration.effect && toleration.effect !== taint.effect) return false;
  if (toleration.key && toleration.key !== taint.key) return false;
  if (toleration.operator === "Exists") return true;
  // "Equal" (the default); an empty key only goes with Exists.
  return Boolean(toleration.key) && (toleration.value ?? "") === (taint.value ?? "");
}

function tolerates(
  tolerations: readonly Toleration[] | undefined,
  taints: readonly Taint[] | undefined,
  effects: readonly string[],
): boolean {
  const all = [...(tolerations ?? []), ...DAEMON_TOLERATIONS];
  return (taints ?? []).every((taint) =>
    !effects.includes(taint.effect) || all.some((t) => toleratesTaint(t, taint))
  );
}

/**
 * Whether the DaemonSet keeps a running daemon pod with these tolerations (its own ones added)
 * on a node with these taints: only a NoExecute taint evicts it.
 */
export function daemonPodStays(
  tolerations: readonly Toleration[] | undefined,
  taints: readonly Taint[] | undefined,
): boolean {
  return tolerates(tolerations, taints, ["NoExecute"]);
}

/**
 * Whether a new daemon pod is scheduled there: every NoSchedule and NoExecute taint tolerated
 * (PreferNoSchedule only steers the scheduler).
 */
export function daemonPodSchedules(
  tolerations: readonly Toleration[] | undefined,
  taints: readonly Taint[] | undefined,
): boolean {
  return tolerates(tolerations, taints, ["NoSchedule", "NoExecute"]);
}
