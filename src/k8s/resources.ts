/** The API resources the operator reads and writes, and their REST paths. */
import { GROUP, VERSION } from "../api/types.ts";

/** One API resource (kind) and where it is served. */
export interface Resource {
  group: string;
  version: string;
  plural: string;
  kind: string;
  namespaced: boolean;
}

/** The operator's own kinds and the built-in kinds it uses. */
export const RESOURCES = {
  ipRules: { group: GROUP, version: VERSION, plural: "iprules", kind: "IPRule", namespaced: false },
  ipRuleConfigs: {
    group: GROUP,
    version: VERSION,
    plural: "ipruleconfigs",
    kind: "IPRuleConfig",
    namespaced: false,
  },
  ipRuleNodeStates: {
    group: GROUP,
    version: VERSION,
    plural: "iprulenodestates",
    kind: "IPRuleNodeState",
    namespaced: false,
  },
  agents: { group: GROUP, version: VERSION, plural: "agents", kind: "Agent", namespaced: true },
  services: { group: "", version: "v1", plural: "services", kind: "Service", namespaced: true },
  namespaces: {
    group: "",
    version: "v1",
    plural: "namespaces",
    kind: "Namespace",
    namespaced: false,
  },
  nodes: { group: "", version: "v1", plural: "nodes", kind: "Node", namespaced: false },
  daemonSets: {
    group: "apps",
    version: "v1",
    plural: "daemonsets",
    kind: "DaemonSet",
    namespaced: true,
  },
  leases: {
    group: "coordination.k8s.io",
    version: "v1",
    plural: "leases",
    kind: "Lease",
    namespaced: true,
  },
  events: {
    group: "events.k8s.io",
    version: "v1",
    plural: "events",
    kind: "Event",
    namespaced: true,
  },
} as const satisfies Record<string, Resource>;

/** `apiVersion` of a resource's objects. */
export function apiVersionOf(resource: Resource): string {
  return resource.group ? `${resource.group}/${resource.version}` : resource.version;
}

/**
 * REST path of a resource's collection, or of one object when `name` is given; `namespace`
 * is required for namespaced objects and, when omitted on a collection, lists all namespaces.
 */
export function resourcePath(
  resource: Resource,
  options: { namespace?: string; name?: string; subresource?: "status" } = {},
): string {
  const base = resource.group
    ? `/apis/${resource.group}/${resource.version}`
    : `/api/${resource.version}`;
  const ns = resource.namespaced && options.namespace
    ? `/namespaces/${encodeURIComponent(options.namespace)}`
    : "";
  const name = options.name === undefined ? "" : `/${encodeURIComponent(options.name)}`;
  const sub = options.subresource && options.name !== undefined ? `/${options.subresource}` : "";
  return `${base}${ns}/${resource.plural}${name}${sub}`;
}
