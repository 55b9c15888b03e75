/**
 * Runtime narrowing of objects read from the API server into the operator's types.
 *
 * Hand-written rather than a schema library: the API server already enforces the CRD schemas,
 * so this only guards the fields the code reads (against objects written before a schema
 * change, or by someone bypassing validation), adds no dependency to the agent's memory
 * budget, and names the failing field in a typed error so one bad object is reported and
 * skipped, never a crash.
 */
import {
  type Agent,
  API_VERSION,
  type ConfigState,
  type DaemonSetInfo,
  type IPRule,
  type IPRuleConfig,
  type IPRuleNodeState,
  type LabelSelector,
  type Lease,
  type NodeInfo,
  type ObjectMeta,
  type OwnerReference,
  type RuleSource,
  type ServiceInfo,
  type ServiceRef,
  type Taint,
} from "./types.ts";
import { DEFAULT_PRIORITY } from "./limits.ts";

/** An object read from the API that does not have the shape the operator needs. */
export class InvalidObjectError extends Error {
  /** Kind of the object, e.g. "IPRule". */
  readonly kind: string;
  /** `namespace/name` or `name` of the object, "" when unknown. */
  readonly object: string;
  /** Path of the offending field, e.g. "spec.cidrs[2]". */
  readonly field: string;
  /** The offending value. */
  readonly value: unknown;

  constructor(kind: string, object: string, field: string, value: unknown, problem: string) {
    super(
      `Invalid ${kind} "${object}": field "${field}" ${problem} (got ${describe(value)})`,
    );
    this.name = "InvalidObjectError";
    this.kind = kind;
    this.object = object;
    this.field = field;
    this.value = value;
  }
}

function describe(value: unknown): string {
  if (value === undefined) return "nothing";
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

type Json = Record<string, unknown>;

function isRecord(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Reads typed fields of one object, throwing {@link InvalidObjectError} naming the field. */
class Reader {
  constructor(readonly kind: string, readonly object: string) {}

  fail(field: string, value: unknown, problem: string): never {
    throw new InvalidObjectError(this.kind, this.object, field, value, problem);
  }

  record(value: unknown, field: string): Json {
    return isRecord(value) ? value : this.fail(field, value, "must be an object");
  }

  optRecord(value: unknown, field: string): Json | undefined {
    return value === undefined || value === null ? undefined : this.record(value, field);
  }

  string(value: unknown, field: string): string {
    return typeof value === "string" ? value : this.fail(field, value, "must be a string");
  }

  optString(value: unknown, field: string): string | undefined {
    return value === undefined || value === null ? undefined : this.string(value, field);
  }

  integer(value: unknown, field: string): number {
    return typeof value === "number" && Number.isSafeInteger(value)
      ? value
      : this.fail(field, value, "must be an integer");
  }

  optInteger(value: unknown, field: string): number | undefined {
    return value === undefined || value === null ? undefined : this.integer(value, field);
  }

  array(value: unknown, field: string): unknown[] {
    return Array.isArray(value) ? value : this.fail(field, value, "must be a list");
  }

  strings(value: unknown, field: string): string[] {
    return this.array(value, field).map((item, i) => this.string(item, `${field}[${i}]`));
  }

  stringMap(value: unknown, field: string): Record<string, string> {
    const map: Record<string, string> = {};
    for (const [key, item] of Object.entries(this.optRecord(value, field) ?? {})) {
      map[key] = this.string(item, `${field}.${key}`);
    }
    return map;
  }

  oneOf<T extends string>(value: unknown, field: string, allowed: readonly T[]): T {
    return typeof value === "string" && (allowed as readonly string[]).includes(value)
      ? value as T
      : this.fail(field, value, `must be one of ${allowed.map((a) => `"${a}"`).join(", ")}`);
  }
}

function identity(kind: string, raw: unknown): Reader {
  const meta = isRecord(raw) && isRecord(raw.metadata) ? raw.metadata : {};
  const name = typeof meta.name === "string" ? meta.name : "";
  const ns = typeof meta.namespace === "string" ? `${meta.namespace}/` : "";
  return new Reader(kind, ns + name);
}

function readMeta(r: Reader, raw: Json): ObjectMeta {
  const m = r.record(raw.metadata, "metadata");
  const meta: ObjectMeta = { name: r.string(m.name, "metadata.name") };
  const namespace = r.optString(m.namespace, "metadata.namespace");
  if (namespace !== undefined) meta.namespace = namespace;
  const uid = r.optString(m.uid, "metadata.uid");
  if (uid !== undefined) meta.uid = uid;
  const rv = r.optString(m.resourceVersion, "metadata.resourceVersion");
  if (rv !== undefined) meta.resourceVersion = rv;
  const generation = r.optInteger(m.generation, "metadata.generation");
  if (generation !== undefined) meta.generation = generation;
  const created = r.optString(m.creationTimestamp, "metadata.creationTimestamp");
  if (created !== undefined) meta.creationTimestamp = created;
  const deleted = r.optString(m.deletionTimestamp, "metadata.deletionTimestamp");
  if (deleted !== undefined) meta.deletionTimestamp = deleted;
  if (m.labels !== undefined) meta.labels = r.stringMap(m.labels, "metadata.labels");
  if (m.annotations !== undefined) {
    meta.annotations = r.stringMap(m.annotations, "metadata.annotations");
  }
  if (m.finalizers !== undefined) meta.finalizers = r.strings(m.finalizers, "metadata.finalizers");
  if (m.ownerReferences !== undefined) {
    meta.ownerReferences = r.array(m.ownerReferences, "metadata.ownerReferences").map((o, i) =>
      readOwnerReference(r, o, `metadata.ownerReferences[${i}]`)
    );
  }
  return meta;
}

function readOwnerReference(r: Reader, value: unknown, field: string): OwnerReference {
  const o = r.record(value, field);
  const ref: OwnerReference = {
    apiVersion: r.string(o.apiVersion, `${field}.apiVersion`),
    kind: r.string(o.kind, `${field}.kind`),
    name: r.string(o.name, `${field}.name`),
    uid: r.string(o.uid, `${field}.uid`),
  };
  if (typeof o.controller === "boolean") ref.controller = o.controller;
  if (typeof o.blockOwnerDeletion === "boolean") ref.blockOwnerDeletion = o.blockOwnerDeletion;
  return ref;
}

function readSelector(r: Reader, value: unknown, field: string): LabelSelector | undefined {
  const raw = r.optRecord(value, field);
  if (raw === undefined) return undefined;
  const selector: LabelSelector = {};
  if (raw.matchLabels !== undefined) {
    selector.matchLabels = r.stringMap(raw.matchLabels, `${field}.matchLabels`);
  }
  if (raw.matchExpressions !== undefined) {
    selector.matchExpressions = r.array(raw.matchExpressions, `${field}.matchExpressions`).map(
      (item, i) => {
        const path = `${field}.matchExpressions[${i}]`;
        const e = r.record(item, path);
        const operator = r.oneOf(
          e.operator,
          `${path}.operator`,
          [
            "In",
            "NotIn",
            "Exists",
            "DoesNotExist",
          ] as const,
        );
        const req = { key: r.string(e.key, `${path}.key`), operator };
        return e.values === undefined
          ? req
          : { ...req, values: r.strings(e.values, `${path}.values`) };
      },
    );
  }
  return selector;
}

function readServiceRef(r: Reader, value: unknown, field: string): ServiceRef {
  const raw = r.record(value, field);
  return {
    namespace: r.string(raw.namespace, `${field}.namespace`),
    name: r.string(raw.name, `${field}.name`),
  };
}

/**
 * Narrows an IPRule; CIDR syntax and ranges are the planner's to judge, not the shape's. The
 * original operator's single `spec.cidr` (deprecated) is normalized here, the one place every
 * reader goes through: it becomes `cidrs: [cidr]` and stays as `spec.cidr` for the deprecation
 * notice (condition and Event). The CRD refuses it together with `cidrs`; an object stored with
 * both before our CRD was applied routes both (no Service the original routed loses its rule).
 */
export function narrowIPRule(raw: unknown): IPRule {
  const r = identity("IPRule", raw);
  const obj = r.record(raw, "");
  const spec = r.record(obj.spec, "spec");
  const cidr = r.optString(spec.cidr, "spec.cidr");
  const cidrs = cidr === undefined || (spec.cidrs !== undefined && spec.cidrs !== null)
    ? r.strings(spec.cidrs, "spec.cidrs")
    : [];
  if (cidr !== undefined && !cidrs.includes(cidr)) cidrs.push(cidr);
  const rule: IPRule = {
    apiVersion: API_VERSION,
    kind: "IPRule",
    metadata: readMeta(r, obj),
    spec: {
      cidrs,
      table: r.integer(spec.table, "spec.table"),
      // 0 is the original operator's "the agent picks one", stored before our CRD (which
      // refuses it) was applied: the default, as for a priority never set.
      priority: r.optInteger(spec.priority, "spec.priority") || DEFAULT_PRIORITY,
    },
  };
  if (cidr !== undefined) rule.spec.cidr = cidr;
  if (spec.source !== undefined) {
    rule.spec.source = r.oneOf<RuleSource>(spec.source, "spec.source", [
      "ClusterIP",
      "LoadBalancerIP",
    ]);
  }
  const services = readSelector(r, spec.serviceSelector, "spec.serviceSelector");
  if (services) rule.spec.serviceSelector = services;
  const namespaces = readSelector(r, spec.namespaceSelector, "spec.namespaceSelector");
  if (namespaces) rule.spec.namespaceSelector = namespaces;
  const status = r.optRecord(obj.status, "status");
  if (status) rule.status = structuredClone(status);
  return rule;
}

/** Narrows an IPRuleConfig. */
export function narrowIPRuleConfig(raw: unknown): IPRuleConfig {
  const r = identity("IPRuleConfig", raw);
  const obj = r.record(raw, "");
  const spec = r.record(obj.spec, "spec");
  const config: IPRuleConfig = {
    apiVersion: API_VERSION,
    kind: "IPRuleConfig",
    metadata: readMeta(r, obj),
    spec: {
      serviceIP: r.string(spec.serviceIP, "spec.serviceIP"),
      table: r.integer(spec.table, "spec.table"),
      priority: r.integer(spec.priority, "spec.priority"),
      state: r.oneOf<ConfigState>(spec.state, "spec.state", ["present", "absent"]),
    },
  };
  const absentSince = r.optString(spec.absentSince, "spec.absentSince");
  if (absentSince !== undefined) config.spec.absentSince = absentSince;
  const ipRule = r.optString(spec.ipRule, "spec.ipRule");
  if (ipRule !== undefined) config.spec.ipRule = ipRule;
  if (spec.service !== undefined) {
    config.spec.service = readServiceRef(r, spec.service, "spec.service");
  }
  if (spec.services !== undefined) {
    config.spec.services = r.array(spec.services, "spec.services").map((s, i) =>
      readServiceRef(r, s, `spec.services[${i}]`)
    );
  }
  return config;
}

/** Narrows an IPRuleNodeState (status is kept as the agent wrote it). */
export function narrowIPRuleNodeState(raw: unknown): IPRuleNodeState {
  const r = identity("IPRuleNodeState", raw);
  const obj = r.record(raw, "");
  const state: IPRuleNodeState = {
    apiVersion: API_VERSION,
    kind: "IPRuleNodeState",
    metadata: readMeta(r, obj),
  };
  const spec = r.optRecord(obj.spec, "spec");
  if (spec) {
    state.spec = {};
    const nodeName = r.optString(spec.nodeName, "spec.nodeName");
    if (nodeName !== undefined) state.spec.nodeName = nodeName;
    const drain = spec.drain;
    if (typeof drain === "boolean") state.spec.drain = drain;
    else if (drain !== undefined && drain !== null) {
      r.fail("spec.drain", drain, "must be a boolean");
    }
  }
  const status = r.optRecord(obj.status, "status");
  if (status) {
    r.optInteger(status.desiredRules, "status.desiredRules");
    r.optInteger(status.appliedRules, "status.appliedRules");
    r.optString(status.lastConvergedTime, "status.lastConvergedTime");
    state.status = structuredClone(status);
  }
  return state;
}

/** Narrows an Agent. */
export function narrowAgent(raw: unknown): Agent {
  const r = identity("Agent", raw);
  const obj = r.record(raw, "");
  const spec = r.optRecord(obj.spec, "spec") ?? {};
  const agent: Agent = {
    apiVersion: API_VERSION,
    kind: "Agent",
    metadata: readMeta(r, obj),
    spec: {},
  };
  const image = r.optString(spec.image, "spec.image");
  if (image !== undefined) agent.spec.image = image;
  if (spec.nodeSelector !== undefined) {
    agent.spec.nodeSelector = r.stringMap(spec.nodeSelector, "spec.nodeSelector");
  }
  if (spec.tolerations !== undefined) {
    agent.spec.tolerations = r.array(spec.tolerations, "spec.tolerations").map((t, i) =>
      structuredClone(r.record(t, `spec.tolerations[${i}]`))
    );
  }
  if (spec.resources !== undefined) {
    agent.spec.resources = structuredClone(r.record(spec.resources, "spec.resources"));
  }
  const pc = r.optString(spec.priorityClassName, "spec.priorityClassName");
  if (pc !== undefined) agent.spec.priorityClassName = pc;
  const resync = r.optString(spec.resyncPeriod, "spec.resyncPeriod");
  if (resync !== undefined) agent.spec.resyncPeriod = resync;
  const adopt = spec.adoptUnmarkedRules;
  if (typeof adopt === "boolean") agent.spec.adoptUnmarkedRules = adopt;
  else if (adopt !== undefined && adopt !== null) {
    r.fail("spec.adoptUnmarkedRules", adopt, "must be a boolean");
  }
  const statusInterval = r.optString(spec.statusInterval, "spec.statusInterval");
  if (statusInterval !== undefined) agent.spec.statusInterval = statusInterval;
  if (spec.logLevel !== undefined) {
    agent.spec.logLevel = r.oneOf(
      spec.logLevel,
      "spec.logLevel",
      [
        "debug",
        "info",
        "warn",
        "error",
      ] as const,
    );
  }
  const status = r.optRecord(obj.status, "status");
  if (status) agent.status = structuredClone(status);
  return agent;
}

/** Narrows a core/v1 Service to what the planner reads. */
export function narrowService(raw: unknown): ServiceInfo {
  const r = identity("Service", raw);
  const obj = r.record(raw, "");
  const meta = readMeta(r, obj);
  const spec = r.optRecord(obj.spec, "spec") ?? {};
  const status = r.optRecord(obj.status, "status") ?? {};
  const lb = r.optRecord(status.loadBalancer, "status.loadBalancer") ?? {};
  const ingress = lb.ingress === undefined
    ? []
    : r.array(lb.ingress, "status.loadBalancer.ingress");
  const ingressIPs: string[] = [];
  let hostnameOnlyIngress = 0;
  ingress.forEach((item, i) => {
    const entry = r.record(item, `status.loadBalancer.ingress[${i}]`);
    const ip = r.optString(entry.ip, `status.loadBalancer.ingress[${i}].ip`);
    if (ip) ingressIPs.push(ip);
    else if (entry.hostname !== undefined) hostnameOnlyIngress++;
  });
  let clusterIPs = spec.clusterIPs === undefined
    ? []
    : r.strings(spec.clusterIPs, "spec.clusterIPs");
  if (clusterIPs.length === 0) {
    const single = r.optString(spec.clusterIP, "spec.clusterIP");
    if (single) clusterIPs = [single];
  }
  return {
    namespace: meta.namespace ?? "",
    name: meta.name,
    labels: meta.labels ?? {},
    type: r.optString(spec.type, "spec.type") ?? "ClusterIP",
    clusterIPs,
    ingressIPs,
    hostnameOnlyIngress,
  };
}

/** Narrows a core/v1 Namespace to its metadata (whether it is being deleted). */
export function narrowNamespace(raw: unknown): { metadata: ObjectMeta } {
  const r = identity("Namespace", raw);
  return { metadata: readMeta(r, r.record(raw, "")) };
}

/** Narrows a core/v1 Namespace to its labels (what `namespaceSelector` matches). */
export function narrowNamespaceLabels(raw: unknown): Record<string, string> {
  const r = identity("Namespace", raw);
  return readMeta(r, r.record(raw, "")).labels ?? {};
}

/**
 * Narrows a core/v1 Node to its name, uid, labels and taints. Taints without a string key and
 * effect are left out (the scheduler cannot match them either).
 */
export function narrowNode(raw: unknown): NodeInfo {
  const r = identity("Node", raw);
  const obj = r.record(raw, "");
  const meta = readMeta(r, obj);
  const spec = r.optRecord(obj.spec, "spec") ?? {};
  const taints: Taint[] = [];
  for (const t of Array.isArray(spec.taints) ? spec.taints : []) {
    if (!isRecord(t) || typeof t.key !== "string" || typeof t.effect !== "string") continue;
    taints.push({
      key: t.key,
      effect: t.effect,
      value: typeof t.value === "string" ? t.value : "",
    });
  }
  const node: NodeInfo = { name: meta.name, labels: meta.labels ?? {}, taints };
  if (meta.uid !== undefined) node.uid = meta.uid;
  return node;
}

/**
 * Narrows an apps/v1 DaemonSet to its metadata, the status counters the Agent mirrors, who set
 * its fields and its Pod template's annotations (what the hand-over from the original reads).
 */
export function narrowDaemonSet(raw: unknown): DaemonSetInfo {
  const r = identity("DaemonSet", raw);
  const obj = r.record(raw, "");
  const status = r.optRecord(obj.status, "status") ?? {};
  const count = (field: string) => r.optInteger(status[field], `status.${field}`) ?? 0;
  const info: DaemonSetInfo = {
    metadata: readMeta(r, obj),
    counts: {
      desiredNumberScheduled: count("desiredNumberScheduled"),
      currentNumberScheduled: count("currentNumberScheduled"),
      numberReady: count("numberReady"),
    },
  };
  const meta = r.record(obj.metadata, "metadata");
  if (meta.managedFields !== undefined && meta.managedFields !== null) {
    info.managedFields = r.array(meta.managedFields, "metadata.managedFields").map((e, i) =>
      structuredClone(r.record(e, `metadata.managedFields[${i}]`))
    );
  }
  const template = r.optRecord(r.optRecord(obj.spec, "spec")?.template, "spec.template");
  const templateMeta = r.optRecord(template?.metadata, "spec.template.metadata");
  if (templateMeta?.annotations !== undefined) {
    info.templateAnnotations = r.stringMap(
      templateMeta.annotations,
      "spec.template.metadata.annotations",
    );
  }
  return info;
}

/** Narrows a coordination.k8s.io/v1 Lease to what leader election reads. */
export function narrowLease(raw: unknown): Lease {
  const r = identity("Lease", raw);
  const obj = r.record(raw, "");
  const spec = r.optRecord(obj.spec, "spec") ?? {};
  const lease: Lease = { metadata: readMeta(r, obj), spec: {} };
  const holder = r.optString(spec.holderIdentity, "spec.holderIdentity");
  if (holder !== undefined) lease.spec.holderIdentity = holder;
  const duration = r.optInteger(spec.leaseDurationSeconds, "spec.leaseDurationSeconds");
  if (duration !== undefined) lease.spec.leaseDurationSeconds = duration;
  const acquired = r.optString(spec.acquireTime, "spec.acquireTime");
  if (acquired !== undefined) lease.spec.acquireTime = acquired;
  const renewed = r.optString(spec.renewTime, "spec.renewTime");
  if (renewed !== undefined) lease.spec.renewTime = renewed;
  const transitions = r.optInteger(spec.leaseTransitions, "spec.leaseTransitions");
  if (transitions !== undefined) lease.spec.leaseTransitions = transitions;
  return lease;
}
