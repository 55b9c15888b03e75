/**
 * The hand-over of the agents' DaemonSet from the original Go operator, in place.
 *
 * Our DaemonSet has the original's name (`iprule-agent`), selector (`app: iprule-agent`, which
 * is immutable) and container name (`agent`), so the object is kept and our server-side apply
 * succeeds on it. But a forced apply only takes the fields we set: the fields that only the
 * original's field manager set stay, and the agents would run with them. Measured on the API
 * server: its `RECONCILE_PERIOD` env, its template-hash annotation, its CPU limit, its
 * `privileged` and `imagePullPolicy`, its labels all survive. The hand-over must end with exactly
 * our template.
 *
 * Ways considered:
 * - Delete and create: a window with no DaemonSet, and its Pods deleted with it.
 * - Orphan-delete and create: the name is free only after the garbage collector orphaned the
 *   Pods (until then an apply would patch the object being deleted); two steps with a window in
 *   which no DaemonSet replaces a failed agent, and the orphans are rolled anyway.
 * - PUT our object: needs the `update` verb, and fields the original set to the same value as
 *   ours stay owned by its manager too, so once we stop rendering one of them our applies could
 *   never remove it.
 * - Chosen: one JSON patch guarded by the live resourceVersion (409 when it changed): it
 *   replaces the labels, annotations, owner references and the whole spec with our rendering,
 *   and sets `managedFields` to what a dry-run forced apply of the same object answers for our
 *   field manager (plus the status subresource's entries). Afterwards the object is exactly our
 *   template and our applies own every field of it, as if we had created it. Only `patch` is
 *   needed, which the controller already has on this one DaemonSet.
 *
 * One write is one template change: the DaemonSet controller rolls the Pods as for any update
 * of the Agent (RollingUpdate, maxUnavailable 1, no surge, since two agents cannot share a
 * node's host-network ports). On each node the original's agent stops and ours starts; the
 * kernel keeps its rules meanwhile (neither agent flushes at stop), so no node is without an
 * agent longer than one agent's stop and start, and no rule goes.
 *
 * What triggers it are the original's own marks (its `managed-by` label on the DaemonSet, its
 * template-hash annotation), not any foreign field manager: `kubectl rollout restart` and the
 * like are left alone. Should the marks come back after a hand-over (the original's controller
 * still runs and writes its template again), the next hand-over waits `HAND_OVER_RETRY_MS` and a
 * Warning says why: two controllers taking turns would otherwise restart every agent endlessly.
 */
import type { DaemonSetInfo, ManagedFieldsEntry } from "../api/types.ts";
import { MANAGED_BY, ORIGINAL_MANAGED_BY_LABEL } from "../api/types.ts";
import { FIELD_MANAGER } from "../k8s/client.ts";
import type { JsonPatchOp, Objects } from "../k8s/objects.ts";
import type { UserEvent } from "./events.ts";
import { DAEMONSET_NAME } from "./daemonset.ts";

/** Annotation of the original's Pod template: the hash of the Agent spec it rendered. */
export const ORIGINAL_TEMPLATE_HASH_ANNOTATION = "iprule.operator.brtrm.dev/template-hash";
/** Annotation we set on the DaemonSet at a hand-over: when it happened. */
export const HANDED_OVER_ANNOTATION = "ip-rule-operator.brtrm.dev/handed-over";
/** How long after a hand-over the original's marks must persist before the next one, ms. */
export const HAND_OVER_RETRY_MS = 5 * 60_000;
/** The API server's own annotation of a DaemonSet (its template generation), kept as it is. */
const TEMPLATE_GENERATION_ANNOTATION = "deprecated.daemonset.template.generation";

/** What to do about the original's marks on the DaemonSet. */
export type HandOverStep =
  /** None there (or no DaemonSet): the usual apply. */
  | { action: "none" }
  /** Replace it by our rendering, now. */
  | { action: "handOver"; managers: string[] }
  /** Marks back since the hand-over at `since`: leave it, look again after `retryMs`. */
  | { action: "wait"; managers: string[]; since: string; retryMs: number };

/** The original operator's marks on a DaemonSet, as `key=value` texts. */
export function originalMarks(ds: DaemonSetInfo): string[] {
  const marks: string[] = [];
  const label = ds.metadata.labels?.[ORIGINAL_MANAGED_BY_LABEL];
  if (label === MANAGED_BY) marks.push(`label ${ORIGINAL_MANAGED_BY_LABEL}=${label}`);
  const hash = ds.templateAnnotations?.[ORIGINAL_TEMPLATE_HASH_ANNOTATION];
  if (hash !== undefined) marks.push(`template annotation ${ORIGINAL_TEMPLATE_HASH_ANNOTATION}`);
  return marks;
}

/** Field managers other than ours that set fields of the object (status writers aside). */
export function otherManagers(entries: readonly ManagedFieldsEntry[] | undefined): string[] {
  const names = (entries ?? [])
    .filter((e) => e.manager !== FIELD_MANAGER && e.subresource !== "status")
    .map((e) => e.manager ?? "(unnamed)");
  return [...new Set(names)].sort();
}

/** The step for the live DaemonSet at time `now` (ms since the epoch). */
export function handOverStep(ds: DaemonSetInfo | undefined, now: number): HandOverStep {
  if (ds === undefined || originalMarks(ds).length === 0) return { action: "none" };
  const managers = otherManagers(ds.managedFields);
  const since = ds.metadata.annotations?.[HANDED_OVER_ANNOTATION];
  const elapsed = since === undefined ? NaN : now - Date.parse(since);
  if (elapsed >= 0 && elapsed < HAND_OVER_RETRY_MS) {
    return { action: "wait", managers, since: since!, retryMs: HAND_OVER_RETRY_MS - elapsed };
  }
  return { action: "handOver", managers };
}

/**
 * The JSON patch that makes `live` exactly `desired` (a rendered DaemonSet): labels,
 * annotations, owner references and spec replaced, `managedFields` set to `ours` (what a dry-run
 * apply of `desired` answered, our entries and the status writers'), the live resourceVersion as
 * the precondition. `now` (RFC 3339) goes into the hand-over annotation.
 */
export function handOverPatch(
  desired: Record<string, unknown>,
  live: DaemonSetInfo,
  ours: readonly ManagedFieldsEntry[],
  now: string,
): JsonPatchOp[] {
  const meta = desired.metadata as {
    labels: Record<string, string>;
    annotations: Record<string, string>;
    ownerReferences: unknown[];
  };
  const generation = live.metadata.annotations?.[TEMPLATE_GENERATION_ANNOTATION];
  const annotations = {
    ...meta.annotations,
    [HANDED_OVER_ANNOTATION]: now,
    ...(generation === undefined ? {} : { [TEMPLATE_GENERATION_ANNOTATION]: generation }),
  };
  const kept = ours.filter((e) => e.manager === FIELD_MANAGER || e.subresource === "status");
  return [
    { op: "add", path: "/metadata/resourceVersion", value: live.metadata.resourceVersion },
    { op: "add", path: "/metadata/labels", value: meta.labels },
    { op: "add", path: "/metadata/annotations", value: annotations },
    { op: "add", path: "/metadata/ownerReferences", value: meta.ownerReferences },
    { op: "add", path: "/spec", value: desired.spec },
    // Without an entry of ours (a server that answered none) the ownership stays as it is.
    ...(kept.some((e) => e.manager === FIELD_MANAGER)
      ? [{ op: "add" as const, path: "/metadata/managedFields", value: kept }]
      : []),
  ];
}

/**
 * Carries out a hand-over: a dry-run forced apply of `desired` for the managed fields it would
 * give us, then the patch of `handOverPatch`. Returns the DaemonSet as the API server wrote it.
 */
export async function handOverDaemonSet(
  daemonSets: Pick<Objects<DaemonSetInfo>, "apply" | "jsonPatch">,
  desired: Record<string, unknown>,
  live: DaemonSetInfo,
  now: string,
): Promise<DaemonSetInfo> {
  const trial = await daemonSets.apply(DAEMONSET_NAME, desired, { dryRun: true });
  const ours = (trial.managedFields ?? []).filter((e) =>
    e.manager === FIELD_MANAGER || e.subresource === "status"
  );
  return await daemonSets.jsonPatch(DAEMONSET_NAME, handOverPatch(desired, live, ours, now));
}

/** The Event on the Agent that tells of a hand-over step (none for "none"). */
export function handOverEvent(
  agent: { name: string; namespace?: string },
  step: HandOverStep,
  marks: readonly string[],
): UserEvent | undefined {
  if (step.action === "none") return undefined;
  const regarding = {
    kind: "Agent",
    name: agent.name,
    ...(agent.namespace === undefined ? {} : { namespace: agent.namespace }),
  };
  const managers = step.managers.length > 0
    ? ` (field manager(s) ${step.managers.map((m) => `"${m}"`).join(", ")})`
    : "";
  if (step.action === "handOver") {
    return {
      regarding,
      type: "Normal",
      reason: "DaemonSetHandedOver",
      note: `DaemonSet "${DAEMONSET_NAME}" taken over from the original operator${managers}, ` +
        `found by its ${marks.join(" and ")}: replaced by the Agent's template, fields only ` +
        "it had set removed; its Pods are replaced one node at a time",
    };
  }
  return {
    regarding,
    type: "Warning",
    reason: "DaemonSetTakenBack",
    note: `DaemonSet "${DAEMONSET_NAME}" carries the original operator's marks again since the ` +
      `hand-over at ${step.since}${managers}: its controller still runs; stop it ` +
      "(docs/migrating-from-the-original.md). Next hand-over at " +
      new Date(Date.parse(step.since) + HAND_OVER_RETRY_MS).toISOString(),
  };
}
