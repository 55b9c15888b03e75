/**
 * The load of the soak: the Services and IPRules it wants to exist, and the seeded stream of
 * changes to them (pure: the model only, no I/O). The churn executor makes the API server match
 * the model, level-based, so a change that fails during an outage is applied once the API is
 * back, and the sequence of models depends on the seed alone.
 *
 * Addresses: LB IPs from pools that match one IPRule, two overlapping ones (longest prefix wins,
 * the other reports a conflict), none, or a small range matched by their LB IP itself (source
 * LoadBalancerIP), where Services share addresses as MetalLB's allow-shared-ip does.
 */
import type { IPRuleSpec } from "../../src/api/types.ts";
import type { Random } from "./random.ts";

/** Namespace of the soak's Services. */
export const SOAK_NAMESPACE = "soak";
/** Label on every object the soak writes. */
export const SOAK_LABEL = "soak.ip-rule-operator/run";

/** IP families of a Service. */
export type Family = "IPv4" | "IPv6" | "dual";

/** What the soak wants of one Service. */
export interface ServiceModel {
  name: string;
  exists: boolean;
  family: Family;
  /** `status.loadBalancer.ingress[].ip`, in order. */
  lbIPs: string[];
}

/** What the soak wants of one IPRule. */
export interface IPRuleModel {
  name: string;
  exists: boolean;
  spec: IPRuleSpec;
}

/** The whole model. */
export interface World {
  services: ServiceModel[];
  ipRules: IPRuleModel[];
}

/** One change of the model: the object it touched and what it did, for the log. */
export interface WorldChange {
  kind: "Service" | "IPRule";
  name: string;
  what: string;
}

/** Number of Services in the universe (a few dozen exist at any time). */
export const SERVICE_COUNT = 48;

const V4_POOLS = {
  a: "10.10", // IPRule soak-a (10.10.0.0/16); 10.10.128+ also soak-c (10.10.128.0/17)
  b: "10.11", // IPRule soak-b
  none: "10.99", // no IPRule (soak-b's second CIDR when it has one)
};
const V6_POOLS = { a: "fd00:10::", b: "fd00:11::", none: "fd00:99::" };
/** LB IPs of IPRule soak-lb (source LoadBalancerIP): 16 addresses, so Services share them. */
const SHARED_POOL = "10.12.0.";

/** The IPRules' specs, each with the variants the churn switches between. */
const RULE_VARIANTS: Record<string, IPRuleSpec[]> = {
  // Tables edited: every config of the rule moves (a batch of adds and deletes on each node).
  "soak-a": [
    { cidrs: ["10.10.0.0/16", "fd00:10::/64"], table: 100, priority: 1000 },
    { cidrs: ["10.10.0.0/16", "fd00:10::/64"], table: 101, priority: 1000 },
  ],
  // CIDRs edited: a range joins and leaves.
  "soak-b": [
    { cidrs: ["10.11.0.0/16"], table: 200, priority: 1100 },
    { cidrs: ["10.11.0.0/16", "fd00:11::/64", "10.99.0.0/16"], table: 200, priority: 1100 },
  ],
  // Overlaps soak-a with a longer prefix; deleted and created again.
  "soak-c": [{ cidrs: ["10.10.128.0/17"], table: 300, priority: 900 }],
  // The LB IP itself as the source, shared between Services.
  "soak-lb": [
    { cidrs: ["10.12.0.0/24"], table: 400, priority: 1200, source: "LoadBalancerIP" },
    { cidrs: ["10.12.0.0/24"], table: 400, priority: 1250, source: "LoadBalancerIP" },
  ],
};

/** The model at the start: every IPRule, no Service yet (the churn creates them). */
export function initialWorld(): World {
  return {
    services: Array.from({ length: SERVICE_COUNT }, (_, i) => ({
      name: `svc-${i}`,
      exists: false,
      family: "IPv4" as Family,
      lbIPs: [],
    })),
    ipRules: Object.entries(RULE_VARIANTS).map(([name, variants]) => ({
      name,
      exists: true,
      spec: structuredClone(variants[0]!),
    })),
  };
}

function v4(random: Random): string {
  const pool = random.pick(["a", "a", "a", "b", "b", "none", "shared"] as const);
  if (pool === "shared") return `${SHARED_POOL}${random.int(1, 16)}`;
  return `${V4_POOLS[pool]}.${random.int(0, 255)}.${random.int(1, 254)}`;
}

function v6(random: Random): string {
  const pool = random.pick(["a", "a", "b", "none"] as const);
  return `${V6_POOLS[pool]}${random.int(1, 0xfff).toString(16)}`;
}

/** LB IPs for a Service of `family`: one or two per family it has. */
export function randomLBIPs(random: Random, family: Family): string[] {
  const ips: string[] = [];
  if (family !== "IPv6") {
    ips.push(v4(random));
    if (random.chance(0.2)) ips.push(v4(random));
  }
  if (family !== "IPv4" && (family === "IPv6" || random.chance(0.8))) ips.push(v6(random));
  return [...new Set(ips)];
}

function randomFamily(random: Random): Family {
  const x = random.float();
  return x < 0.6 ? "IPv4" : x < 0.85 ? "dual" : "IPv6";
}

/**
 * Applies one seeded change to the model and says what it was: most changes touch Services
 * (created, deleted, LB IPs changed or withdrawn), one in eight an IPRule (table or CIDRs
 * edited, soak-c deleted or created again, soak-lb's priority edited). Creations outweigh
 * deletions until about two thirds of the universe exists, so the cluster stays loaded.
 */
export function randomChange(world: World, random: Random): WorldChange {
  if (random.chance(0.12)) {
    const rule = random.pick(world.ipRules);
    const variants = RULE_VARIANTS[rule.name]!;
    if (rule.name === "soak-c") {
      rule.exists = !rule.exists;
      return { kind: "IPRule", name: rule.name, what: rule.exists ? "created" : "deleted" };
    }
    const current = JSON.stringify(rule.spec);
    const next = variants.find((v) => JSON.stringify(v) !== current) ?? variants[0]!;
    const what = next.table !== rule.spec.table
      ? `table ${rule.spec.table} -> ${next.table}`
      : next.priority !== rule.spec.priority
      ? `priority ${rule.spec.priority} -> ${next.priority}`
      : `cidrs ${rule.spec.cidrs.join(",")} -> ${next.cidrs.join(",")}`;
    rule.spec = structuredClone(next);
    return { kind: "IPRule", name: rule.name, what };
  }
  const svc = random.pick(world.services);
  const existing = world.services.filter((s) => s.exists).length;
  if (!svc.exists) {
    svc.exists = true;
    svc.family = randomFamily(random);
    svc.lbIPs = random.chance(0.1) ? [] : randomLBIPs(random, svc.family);
    return { kind: "Service", name: svc.name, what: `created ${svc.family} ${ips(svc)}` };
  }
  const x = random.float();
  const deleteShare = existing > (world.services.length * 2) / 3 ? 0.4 : 0.15;
  if (x < deleteShare) {
    svc.exists = false;
    svc.lbIPs = [];
    return { kind: "Service", name: svc.name, what: "deleted" };
  }
  if (x < deleteShare + 0.1 && svc.lbIPs.length > 0) {
    svc.lbIPs = [];
    return { kind: "Service", name: svc.name, what: "LB IPs withdrawn" };
  }
  svc.lbIPs = randomLBIPs(random, svc.family);
  return { kind: "Service", name: svc.name, what: `LB IPs ${ips(svc)}` };
}

function ips(svc: ServiceModel): string {
  return svc.lbIPs.length === 0 ? "(none)" : svc.lbIPs.join(",");
}

/** Toggles soak-a's table (the "mid-batch" agent kill's batch): every soak-a config moves. */
export function toggleTable(world: World): WorldChange {
  const rule = world.ipRules.find((r) => r.name === "soak-a")!;
  const from = rule.spec.table;
  const next = RULE_VARIANTS["soak-a"]!.find((v) => v.table !== from)!;
  rule.spec = structuredClone(next);
  return { kind: "IPRule", name: rule.name, what: `table ${from} -> ${next.table}` };
}
