/**
 * The soak's fault schedule, drawn from the seed before the run starts (pure: no I/O, no clock).
 * Each kind arrives as a Poisson process of its own mean interval, so kinds overlap freely; two
 * faults of one kind on one target never do (the second waits until the first has ended). Every
 * fault ends before the run does, and every kind happens at least once when the run is long
 * enough to hold it, so a short fixed-seed run still exercises all of them.
 */
import type { Random } from "./random.ts";

/** What a fault does. */
export type FaultKind =
  | "apiserver-kill"
  | "etcd-kill"
  | "agent-kill"
  | "leader-kill"
  | "link-cut"
  | "flush"
  | "foreign-rules";

/** How often a kind happens, how long its target stays down, and its variants. */
export interface FaultKindSpec {
  /** Mean time between two faults of this kind, ms. */
  meanIntervalMs: number;
  /** Range of the down time (process restart delay, link cut length), ms; [0, 0] when instant. */
  downMs: readonly [number, number];
  /** Whether the fault targets one node (drawn uniformly). */
  perNode: boolean;
  /** Ways to inject it, drawn uniformly. */
  variants?: readonly string[];
}

/**
 * The kinds, as the issue lists them. Rates: about one fault every 7 s in all, so that a 2-minute
 * run sees ~17 and a 15-minute run ~130; the cheap node-local faults come most often, the
 * control-plane kills (each costs every client a reconnect) least.
 */
export const FAULT_KINDS: Readonly<Record<FaultKind, FaultKindSpec>> = {
  // SIGKILL, restarted after the down time with the same flags, port and data.
  "apiserver-kill": { meanIntervalMs: 90_000, downMs: [2_000, 15_000], perNode: false },
  // SIGKILL; the API server answers errors meanwhile.
  "etcd-kill": { meanIntervalMs: 120_000, downMs: [2_000, 15_000], perNode: false },
  // SIGKILL, restarted after the down time (a kubelet restarting the pod). "mid-batch" edits an
  // IPRule's table (a batch of adds and deletes on every node) and kills the agent as soon as
  // its kernel starts changing.
  "agent-kill": {
    meanIntervalMs: 30_000,
    downMs: [200, 3_000],
    perNode: true,
    variants: ["random", "mid-batch"],
  },
  // SIGKILL of the replica holding the Lease while the other stands by; restarted as a standby.
  "leader-kill": { meanIntervalMs: 75_000, downMs: [1_000, 5_000], perNode: false },
  // The node's link to the API server cut inside its namespace: the veth down (sends fail at
  // once), or a netfilter drop of the API server's traffic (a silent black hole).
  "link-cut": {
    meanIntervalMs: 60_000,
    downMs: [5_000, 60_000],
    perNode: true,
    variants: ["link-down", "drop"],
  },
  // Every rule not from the kernel deleted by an outside process (systemd-networkd's
  // ManageForeignRoutingPolicyRules, NetworkManager).
  flush: { meanIntervalMs: 40_000, downMs: [0, 0], perNode: true },
  // A foreign process adds rules with our sources but other protocols.
  "foreign-rules": { meanIntervalMs: 30_000, downMs: [0, 0], perNode: true },
};

/** Every kind, in the report's order. */
export const KINDS = Object.keys(FAULT_KINDS) as FaultKind[];

/** One scheduled fault. */
export interface Fault {
  /** Position in the schedule, from 1. */
  id: number;
  kind: FaultKind;
  /** Start, ms after the soak's start. */
  at: number;
  /** How long the target stays down, ms (0 for instant faults). */
  downMs: number;
  /** Index of the target node, for node faults. */
  node?: number;
  variant?: string;
}

/** Shape of a schedule. */
export interface ScheduleOptions {
  /** Length of the run, ms: every fault ends before it. */
  durationMs: number;
  /** Number of nodes. */
  nodes: number;
  /** No fault starts before this, ms (load first, so the first faults meet a busy cluster). */
  warmupMs?: number;
  /** The kinds and rates; default {@link FAULT_KINDS}. */
  kinds?: Readonly<Record<FaultKind, FaultKindSpec>>;
  /** Faults this many times as often as the kinds' mean intervals say; default 1. */
  rate?: number;
}

/** Gap between the end of a fault and the next one of its kind on the same target, ms. */
const SAME_TARGET_GAP_MS = 1_000;

/** The faults of one run, sorted by start time. */
export function scheduleFaults(random: Random, options: ScheduleOptions): Fault[] {
  const kinds = options.kinds ?? FAULT_KINDS;
  const warmup = options.warmupMs ?? 5_000;
  const drafts: Omit<Fault, "id">[] = [];
  for (const kind of KINDS) {
    const spec = kinds[kind];
    // Each kind draws from its own stream: changing one kind's rate leaves the others' faults.
    const r = random.split();
    const mean = spec.meanIntervalMs / (options.rate ?? 1);
    const times: number[] = [];
    for (let t = warmup + r.exponential(mean); t < options.durationMs;) {
      times.push(t);
      t += r.exponential(mean);
    }
    const latestStart = options.durationMs - spec.downMs[1];
    if (times.filter((t) => t <= latestStart).length === 0 && latestStart > warmup) {
      times.push(r.between(warmup, latestStart));
    }
    const busyUntil = new Map<number, number>();
    for (const t of times.sort((a, b) => a - b)) {
      const downMs = Math.round(r.between(spec.downMs[0], spec.downMs[1]));
      const node = spec.perNode ? r.int(0, options.nodes - 1) : undefined;
      const variant = spec.variants ? r.pick(spec.variants) : undefined;
      const at = Math.round(Math.max(t, busyUntil.get(node ?? -1) ?? 0));
      if (at + downMs > options.durationMs) continue;
      busyUntil.set(node ?? -1, at + downMs + SAME_TARGET_GAP_MS);
      drafts.push({
        kind,
        at,
        downMs,
        ...(node === undefined ? {} : { node }),
        ...(variant === undefined ? {} : { variant }),
      });
    }
  }
  drafts.sort((a, b) => a.at - b.at || KINDS.indexOf(a.kind) - KINDS.indexOf(b.kind));
  return drafts.map((f, i) => ({ id: i + 1, ...f }));
}

/** `#7 link-cut node-1 (drop) 23.4s` — how a fault is named in logs and violations. */
export function faultLabel(fault: Fault, nodeName?: (index: number) => string): string {
  const target = fault.node === undefined
    ? ""
    : ` ${nodeName ? nodeName(fault.node) : `node ${fault.node}`}`;
  const variant = fault.variant ? ` (${fault.variant})` : "";
  const down = fault.downMs > 0 ? ` down ${(fault.downMs / 1000).toFixed(1)}s` : "";
  return `#${fault.id} ${fault.kind}${target}${variant}${down}`;
}
