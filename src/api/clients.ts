/**
 * Each resource the operator reads, paired once with its narrower: informers and typed
 * clients are built from this table, so every object read from the API server is narrowed by
 * the one function for its kind.
 */
import type { KubeClient } from "../k8s/client.ts";
import { ObjectClient } from "../k8s/objects.ts";
import { RESOURCES } from "../k8s/resources.ts";
import {
  narrowAgent,
  narrowDaemonSet,
  narrowIPRule,
  narrowIPRuleConfig,
  narrowIPRuleNodeState,
  narrowLease,
  narrowNamespaceLabels,
  narrowNode,
  narrowService,
} from "./narrow.ts";

/** The narrower of every resource the operator reads, by its key in `RESOURCES`. */
export const NARROWERS = {
  ipRules: narrowIPRule,
  ipRuleConfigs: narrowIPRuleConfig,
  ipRuleNodeStates: narrowIPRuleNodeState,
  agents: narrowAgent,
  services: narrowService,
  namespaces: narrowNamespaceLabels,
  nodes: narrowNode,
  daemonSets: narrowDaemonSet,
  leases: narrowLease,
} as const;

/** A resource the operator reads, e.g. "ipRuleConfigs". */
export type Kind = keyof typeof NARROWERS;

/** The narrowed type of a resource's objects. */
export type Narrowed<K extends Kind> = ReturnType<(typeof NARROWERS)[K]>;

/** The resource and narrower of a kind, as an informer takes them. */
export function typed<K extends Kind>(
  kind: K,
): { resource: (typeof RESOURCES)[K]; narrow: (raw: unknown) => Narrowed<K> } {
  return { resource: RESOURCES[kind], narrow: NARROWERS[kind] as (raw: unknown) => Narrowed<K> };
}

/** Typed reads and writes of one kind (in `namespace` for namespaced kinds). */
export function objectClient<K extends Kind>(
  client: KubeClient,
  kind: K,
  namespace?: string,
): ObjectClient<Narrowed<K>> {
  const { resource, narrow } = typed(kind);
  return new ObjectClient(client, resource, {
    narrow,
    ...(namespace === undefined ? {} : { namespace }),
  });
}
