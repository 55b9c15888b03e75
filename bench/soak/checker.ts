/**
 * The soak's invariants, checked on every kernel sample and every IPRuleConfig change (pure: the
 * caller passes the time and what it observed; no I/O).
 *
 * What "desired" means here: the rules the present IPRuleConfigs ask for, as the soak's own watch
 * of the API server sees them (the agents' source of truth), and, for the controller, the configs
 * the pure planner computes from the soak's watch of Services and IPRules. The soak's watches
 * retry within a second, the operator's within its 30 s backoff, so the soak's view is the
 * fresher one; where it may still trail an agent by a moment, a finding is judged only after
 * `lagMs`, against everything the soak saw around it.
 */
import { formatRule, type KernelRule } from "../../ffi/mod.ts";

/**
 * The bounds the invariants are held to. Each is a promise of the design, with room for this
 * 2-core machine shared with other builds (event-loop stalls, GC pauses, process starts of
 * 0.5-2 s); none is tuned to what a run happened to measure.
 */
export interface Bounds {
  /**
   * Safety: an own rule no present config asks for is gone within this long once the node's
   * agent is connected to the API server. The agent sees the config's change on its watch within
   * milliseconds and reconciles 5 ms later (the debounce); the kernel delete takes microseconds.
   * bench:e2e measures p99 < 1 s for 500 Services at once on 3 nodes; 2 s is that with headroom
   * for a loaded machine, and far below the original operator's 10 s polling.
   */
  safetyMs: number;
  /**
   * Repair: after an outside flush, every desired rule that was there is back within this long
   * once the node's agent runs and has listed its configs. The agent's netlink subscription
   * sees each delete in ~0.3 ms and puts the rule back without even a dump; a flush while the
   * subscription's buffer overflows costs one dump of the node's rules (< 10 ms for 10k). Same
   * headroom as the safety bound.
   */
  repairMs: number;
  /**
   * Liveness: after the last fault and the last change, every node holds exactly the desired
   * rules, says so in its IPRuleNodeState, and every IPRuleConfig is the planner's, within this
   * long. The operator's list/watch retries back off up to 30 s (client-go's reflector does the
   * same, so that thousands of agents do not hammer an API server coming back), so an agent
   * that failed through the last outage may wait that long before it lists again; 15 s more
   * cover a process restart, the lists, a leader's lease expiry (8 s in the soak) and the writes.
   */
  convergenceMs: number;
  /**
   * How far apart in time the soak and an agent or the controller may see the same change: a
   * finding that the soak's view around it explains (the config did change, the Service did stop
   * matching) within this window is no violation.
   */
  lagMs: number;
}

/** The bounds of `task soak` and the e2e soak. */
export const BOUNDS: Bounds = {
  safetyMs: 2_000,
  repairMs: 2_000,
  convergenceMs: 45_000,
  lagMs: 2_000,
};

/** Which invariant a violation breaks. */
export type Invariant = "safety" | "foreign" | "no-dip" | "repair" | "nothing-lost" | "liveness";

/** One invariant violation, with what is needed to reproduce it. */
export interface Violation {
  invariant: Invariant;
  /** When it was found, ms after the soak's start. */
  at: number;
  /** The node, for kernel findings. */
  node?: string;
  /** The rule (`from … lookup … priority …`) or the IPRuleConfig's name. */
  subject: string;
  detail: string;
  /** Faults active then, and those that ended in the 30 s before. */
  faults: string[];
}

/** Identity of a rule for the invariants: source prefix, table and priority. */
export type RuleKey = string;

/** `from 10.96.0.5 lookup 100 priority 1000` (the prefix length only when not a host). */
export function ruleKey(rule: { src: string; srcLen: number; table: number; priority: number }) {
  const host = rule.srcLen === (rule.src.includes(":") ? 128 : 32);
  const from = rule.srcLen === 0 ? "all" : host ? rule.src : `${rule.src}/${rule.srcLen}`;
  return `from ${from} lookup ${rule.table} priority ${rule.priority}`;
}

/** What one kernel dump of a node says, for the invariants. */
export interface KernelSample {
  /** Rules with the agent's protocol (non-plain ones by their full text). */
  own: Set<RuleKey>;
  /** Plain rules of any protocol: an identical foreign rule satisfies a desired one too. */
  present: Set<RuleKey>;
  /** Every other rule, every field (selectors' raw attributes in hex), sorted. */
  foreign: string[];
}

/** Every field of a kernel rule, selectors' raw attributes in hex: "byte for byte". */
export function ruleBytes(rule: KernelRule): string {
  const extra = [...rule.extra].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${rule.family}|${rule.src}/${rule.srcLen}|${rule.dst}/${rule.dstLen}|tos ${rule.tos}|` +
    `flags ${rule.flags}|iif ${rule.iif}|oif ${rule.oif}|mark ${rule.fwmark}/${rule.fwmask}|` +
    `action ${rule.action}|table ${rule.table}|goto ${rule.goto}|prio ${rule.priority}|` +
    `proto ${rule.protocol}|extra ${extra} (${formatRule(rule)})`;
}

/** Splits a node's rules into own, present and foreign. */
export function summarize(rules: readonly KernelRule[], protocol: number): KernelSample {
  const sample: KernelSample = { own: new Set(), present: new Set(), foreign: [] };
  for (const rule of rules) {
    if (rule.plain) sample.present.add(ruleKey(rule));
    if (rule.protocol === protocol) sample.own.add(rule.plain ? ruleKey(rule) : formatRule(rule));
    else sample.foreign.push(ruleBytes(rule));
  }
  sample.foreign.sort();
  return sample;
}

/** A set observed over time, answering what it held at any moment since the first update. */
export class Timeline {
  #current = new Set<string>();
  readonly #history = new Map<string, [time: number, member: boolean][]>();
  #start: number | undefined;

  /** The members now. */
  get current(): ReadonlySet<string> {
    return this.#current;
  }

  /** Records that from `time` on the members are `members`. */
  update(time: number, members: Iterable<string>): void {
    this.#start ??= time;
    const next = new Set(members);
    for (const key of next) if (!this.#current.has(key)) this.#push(key, time, true);
    for (const key of this.#current) if (!next.has(key)) this.#push(key, time, false);
    this.#current = next;
  }

  #push(key: string, time: number, member: boolean): void {
    const list = this.#history.get(key);
    if (list) list.push([time, member]);
    else this.#history.set(key, [[time, member]]);
  }

  /** When `key` last left the set, if it is not a member now and ever was. */
  leftAt(key: string): number | undefined {
    if (this.#current.has(key)) return undefined;
    const list = this.#history.get(key);
    return list?.[list.length - 1]?.[0];
  }

  /** Whether `key` was a member at no moment of [from, to] (false before the first update). */
  absentThroughout(key: string, from: number, to: number): boolean {
    if (this.#start === undefined || from < this.#start) return false;
    let member = false;
    for (const [time, m] of this.#history.get(key) ?? []) {
      if (time <= from) member = m;
      else if (time <= to && m) return false;
      else if (time > to) break;
    }
    return !member;
  }

  /** Whether `key` was a member at every moment of [from, to] (false before the first update). */
  heldThroughout(key: string, from: number, to: number): boolean {
    if (this.#start === undefined || from < this.#start) return false;
    let member = false;
    for (const [time, m] of this.#history.get(key) ?? []) {
      if (time <= from) member = m;
      else if (time <= to && !m) return false;
      else if (time > to) break;
    }
    return member;
  }
}

/** Why a node's agent cannot be expected to act on the API's state (besides not running). */
export type BlockReason = "apiserver" | "etcd" | "link";

interface Repair {
  /** When the flush started. */
  at: number;
  /** Desired rules present before the flush, still to come back. */
  keys: Set<RuleKey>;
  reported: boolean;
}

interface NodeTrack {
  /** Blocks in force, counted (faults of different kinds overlap). */
  blocked: Map<BlockReason, number>;
  /** When the ongoing or last cut-off from the API server began, and when it ended. */
  outage: { start: number; end?: number } | undefined;
  /** A healed link cut whose block ends at the node's first converged sample, or at `cap`. */
  catchUp: { reason: BlockReason; healed: number; cap: number } | undefined;
  /** When the last block ended (the safety clock runs from here at the earliest). */
  openSince: number;
  /** When the running agent had listed its configs; undefined while none has. */
  agentUpSince: number | undefined;
  prevPresent: Set<RuleKey> | undefined;
  prevAt: number;
  /** First time an own, undesired rule was seen, for rules never desired. */
  firstUnwanted: Map<RuleKey, number>;
  reportedSafety: Set<RuleKey>;
  /** The foreign rules the node must hold; undefined while the soak changes them. */
  expectedForeign: string[] | undefined;
  lastForeignMismatch: string;
  repair: Repair | undefined;
}

interface PendingDip {
  faults: string[];
  node: string;
  key: RuleKey;
  lastSeen: number;
  missingAt: number;
  /**
   * Since when the agent's view may lag: its cut-off from the API server began then, and it
   * catches up through the changes it missed (a watch resumed from its last version, or
   * events delivered late by TCP once a silent cut heals, replay them in order).
   */
  staleSince: number;
}

interface PendingSafety {
  faults: string[];
  node: string;
  key: RuleKey;
  /** When the rule was last asked for (or first seen unwanted), or the node reconnected. */
  since: number;
  at: number;
}

interface PendingConfig {
  faults: string[];
  name: string;
  at: number;
  what: "marked absent" | "deleted" | "written";
  /** The rule a written config asks for. */
  key?: RuleKey;
}

/** One config as the API server has it, for the checker. */
export interface ObservedConfig {
  name: string;
  present: boolean;
  /** The rule it asks for. */
  key: RuleKey;
}

/** How long after its end a fault is still named in a violation. */
const RECENT_FAULT_MS = 30_000;

/** Checks the invariants as observations come in. */
export class InvariantChecker {
  readonly bounds: Bounds;
  /** Violations found so far, in order. */
  readonly violations: Violation[] = [];
  /** Checks made, by what was checked. */
  readonly checks = { kernel: 0, foreign: 0, configs: 0, final: 0 };
  /**
   * Time from each outside flush (or from the agent's listing, when it was not running then) to
   * every rule being back, ms.
   */
  readonly repairTimes: number[] = [];
  /** Flushes whose rules all stopped being desired before the node's agent ran again. */
  repairsWithoutAgent = 0;
  /** Time from a healed link cut to the node's first converged sample, ms (undefined: capped). */
  readonly catchUpTimes: (number | undefined)[] = [];
  /** Rules the API's present configs ask for. */
  readonly desired = new Timeline();
  /** Config names the planner wants present, from the Services and IPRules the soak sees. */
  readonly planned = new Timeline();
  /** The same as `name: rule`, for the rule each config asks for. */
  readonly plannedRules = new Timeline();
  readonly #nodes = new Map<string, NodeTrack>();
  #configs = new Map<string, ObservedConfig>();
  #dips: PendingDip[] = [];
  /** Since when the soak's view of the configs is stale, while it is. */
  #viewLostAt: number | undefined;
  #safety: PendingSafety[] = [];
  #configChecks: PendingConfig[] = [];
  readonly #active = new Map<number, string>();
  readonly #ended: { at: number; label: string }[] = [];

  constructor(nodes: readonly string[], bounds: Bounds = BOUNDS) {
    this.bounds = bounds;
    for (const node of nodes) {
      this.#nodes.set(node, {
        blocked: new Map(),
        outage: undefined,
        catchUp: undefined,
        openSince: 0,
        agentUpSince: undefined,
        prevPresent: undefined,
        prevAt: 0,
        firstUnwanted: new Map(),
        reportedSafety: new Set(),
        expectedForeign: undefined,
        lastForeignMismatch: "",
        repair: undefined,
      });
    }
  }

  #node(name: string): NodeTrack {
    const node = this.#nodes.get(name);
    if (!node) throw new RangeError(`Unknown node "${name}"`);
    return node;
  }

  /** A fault began. */
  faultStarted(id: number, label: string): void {
    this.#active.set(id, label);
  }

  /** A fault ended (its target is back). */
  faultEnded(time: number, id: number): void {
    const label = this.#active.get(id);
    if (label === undefined) return;
    this.#active.delete(id);
    this.#ended.push({ at: time, label });
  }

  /** Labels of the faults active at `time` and of those that ended shortly before. */
  faultsAt(time: number): string[] {
    const recent = this.#ended
      .filter((f) => f.at <= time && time - f.at <= RECENT_FAULT_MS)
      .map((f) => `${f.label} (ended ${((time - f.at) / 1000).toFixed(1)}s before)`);
    return [...this.#active.values(), ...recent];
  }

  /** The last time a node's agent became connected again (a block ended, an agent listed). */
  get lastOpened(): number {
    return Math.max(...[...this.#nodes.values()].map((n) => n.openSince));
  }

  /** Whether no fault is active and every node's agent runs connected. */
  get calm(): boolean {
    return this.#active.size === 0 && [...this.#nodes.keys()].every((n) => !this.blocked(n));
  }

  /** The node's agent cannot see the API server's state, for `reason` (until `unblock`). */
  block(node: string, reason: BlockReason, time: number): void {
    const track = this.#node(node);
    if (track.blocked.size === 0) track.outage = { start: time };
    track.blocked.set(reason, (track.blocked.get(reason) ?? 0) + 1);
  }

  /** One `block` for `reason` is over: from `time` on it keeps the agent no longer. */
  unblock(time: number, node: string, reason: BlockReason): void {
    const track = this.#node(node);
    const count = track.blocked.get(reason) ?? 0;
    if (count > 1) return void track.blocked.set(reason, count - 1);
    if (!track.blocked.delete(reason)) return;
    if (track.blocked.size > 0) return;
    track.openSince = Math.max(track.openSince, time);
    if (track.outage) track.outage.end = time;
  }

  /**
   * The cause of a `block` is gone at `healed`, but whether the agent's watch survived is not
   * known (a silent cut): the block ends at the first sample that shows the node converged to
   * the configs as they are, or at `cap` at the latest. How long that took is `catchUpTimes`.
   */
  unblockWhenConverged(node: string, reason: BlockReason, healed: number, cap: number): void {
    const track = this.#node(node);
    if (track.catchUp) this.unblock(healed, node, track.catchUp.reason);
    track.catchUp = { reason, healed, cap };
  }

  /** Whether the node's agent cannot be expected to act on the API's state now. */
  blocked(node: string): boolean {
    const track = this.#node(node);
    return track.agentUpSince === undefined || track.blocked.size > 0;
  }

  /** The node's agent is not running (killed, or started and not yet listed). */
  agentDown(node: string): void {
    this.#node(node).agentUpSince = undefined;
  }

  /** The node's agent runs and has listed its configs, from `time` on. */
  agentUp(time: number, node: string): void {
    const track = this.#node(node);
    track.agentUpSince = time;
    track.openSince = Math.max(track.openSince, time);
  }

  /** The soak is about to change the node's foreign rules: no comparison until told. */
  foreignBusy(node: string): void {
    this.#node(node).expectedForeign = undefined;
  }

  /** The foreign rules the node holds from now on (the kernel's and the soak's own). */
  expectForeign(node: string, foreign: readonly string[]): void {
    const track = this.#node(node);
    track.expectedForeign = [...foreign].sort();
    track.lastForeignMismatch = "";
  }

  /**
   * An outside flush of the node starts at `time`; `before` is the node's last sample before
   * it: every rule then present and desired must come back within the repair bound.
   */
  flushed(time: number, node: string, before: KernelSample): void {
    const keys = new Set([...before.present].filter((k) => this.desired.current.has(k)));
    this.#node(node).repair = { at: time, keys, reported: false };
  }

  /**
   * The soak's own view of the configs went stale at `time` (its watch failed: an API server or
   * etcd outage). Until `viewCurrent`, a change it learns happened at some moment since then, so
   * the rules' desired timeline dates it at `time`, the earliest it can have been (an agent may
   * have heard of it before the outage cut the soak's watch), and no dip or safety finding is
   * judged on a window that reaches into the stale view.
   */
  viewLost(time: number): void {
    this.#viewLostAt ??= time;
  }

  /** The soak's view of the configs has caught up again (see `viewLost`). */
  viewCurrent(): void {
    this.#viewLostAt = undefined;
  }

  /** The API's configs at `time` (as the soak's view has them; see `viewLost`). */
  observeConfigs(time: number, configs: readonly ObservedConfig[]): void {
    const present = configs.filter((c) => c.present).map((c) => c.key);
    this.desired.update(this.#viewLostAt ?? time, present);
    const next = new Map(configs.map((c) => [c.name, c]));
    let faults: string[] | undefined;
    const check = (name: string, what: PendingConfig["what"], key?: RuleKey) => {
      faults ??= this.faultsAt(time);
      this.#configChecks.push({ name, at: time, what, faults, ...(key ? { key } : {}) });
    };
    for (const [name, before] of this.#configs) {
      const now = next.get(name);
      if (now === undefined) check(name, "deleted");
      else if (before.present && !now.present) check(name, "marked absent");
    }
    for (const [name, now] of next) {
      const before = this.#configs.get(name);
      if (now.present && (!before?.present || before.key !== now.key)) {
        check(name, "written", now.key);
      }
    }
    this.#configs = next;
  }

  /** The configs the planner wants present at `time`, by name, with the rule each asks for. */
  observePlan(time: number, planned: ReadonlyMap<string, RuleKey>): void {
    this.planned.update(time, planned.keys());
    this.plannedRules.update(time, [...planned].map(([name, key]) => `${name}: ${key}`));
  }

  #violation(v: Omit<Violation, "faults"> & { faults?: string[] }): void {
    this.violations.push({ ...v, faults: v.faults ?? this.faultsAt(v.at) });
  }

  /** Whether the node's last outside flush is still being repaired. */
  repairing(node: string): boolean {
    return this.#node(node).repair !== undefined;
  }

  /** Checks one kernel sample of `node` (an older one than the last is ignored). */
  sample(time: number, node: string, sample: KernelSample): void {
    const track = this.#node(node);
    if (time < track.prevAt) return;
    this.checks.kernel++;
    this.#checkSafety(time, node, track, sample);
    if (track.prevPresent) {
      for (const key of track.prevPresent) {
        if (sample.present.has(key) || !this.desired.current.has(key)) continue;
        if (track.repair?.keys.has(key)) continue;
        const outage = track.outage;
        const catchingUp = outage !== undefined &&
          (outage.end === undefined || time - outage.end <= this.bounds.lagMs);
        this.#dips.push({
          node,
          key,
          lastSeen: track.prevAt,
          missingAt: time,
          staleSince: Math.min(track.prevAt, catchingUp ? outage.start : Infinity),
          faults: this.faultsAt(time),
        });
      }
    }
    this.#checkRepair(time, node, track, sample);
    this.#checkCatchUp(time, node, track, sample);
    if (track.expectedForeign !== undefined) {
      this.checks.foreign++;
      this.#checkForeign(time, node, track, sample);
    }
    track.prevPresent = sample.present;
    track.prevAt = time;
  }

  #checkSafety(time: number, node: string, track: NodeTrack, sample: KernelSample): void {
    for (const key of track.firstUnwanted.keys()) {
      if (!sample.own.has(key) || this.desired.current.has(key)) {
        track.firstUnwanted.delete(key);
        track.reportedSafety.delete(key);
      }
    }
    for (const key of sample.own) {
      if (this.desired.current.has(key)) continue;
      if (!track.firstUnwanted.has(key)) track.firstUnwanted.set(key, time);
      if (this.blocked(node) || track.reportedSafety.has(key)) continue;
      const since = Math.max(
        this.desired.leftAt(key) ?? track.firstUnwanted.get(key)!,
        track.openSince,
      );
      if (time - since <= this.bounds.safetyMs) continue;
      // Judged once the soak's view has caught up: the agent may have seen the config come
      // back before the soak did.
      track.reportedSafety.add(key);
      this.#safety.push({ node, key, since, at: time, faults: this.faultsAt(time) });
    }
  }

  #checkRepair(time: number, node: string, track: NodeTrack, sample: KernelSample): void {
    const repair = track.repair;
    if (!repair) return;
    for (const key of repair.keys) {
      if (!this.desired.current.has(key) || sample.present.has(key)) repair.keys.delete(key);
    }
    if (repair.keys.size === 0) {
      // Timed from when the agent could act: a killed agent repairs once it has listed again.
      // Rules that stopped being desired while no agent ran were not repaired by anyone.
      if (track.agentUpSince === undefined) this.repairsWithoutAgent++;
      else this.repairTimes.push(time - Math.max(repair.at, track.agentUpSince));
      track.repair = undefined;
      return;
    }
    if (repair.reported || track.agentUpSince === undefined) return;
    const since = Math.max(repair.at, track.agentUpSince);
    if (time - since <= this.bounds.repairMs) return;
    repair.reported = true;
    this.#violation({
      invariant: "repair",
      at: time,
      node,
      subject: [...repair.keys][0]!,
      detail: `${repair.keys.size} desired rule(s) not back ${time - since} ms after an outside ` +
        `flush with the agent running (bound ${this.bounds.repairMs} ms): ${
          [...repair.keys].slice(0, 5).join("; ")
        }`,
    });
  }

  #checkCatchUp(time: number, node: string, track: NodeTrack, sample: KernelSample): void {
    const catchUp = track.catchUp;
    if (!catchUp || track.agentUpSince === undefined) {
      if (catchUp && time >= catchUp.cap) this.#endCatchUp(time, node, track, undefined);
      return;
    }
    const desired = this.desired.current;
    const converged = [...sample.own].every((k) => desired.has(k)) &&
      [...desired].every((k) => sample.present.has(k));
    if (converged) this.#endCatchUp(time, node, track, time - catchUp.healed);
    else if (time >= catchUp.cap) this.#endCatchUp(time, node, track, undefined);
  }

  #endCatchUp(time: number, node: string, track: NodeTrack, took: number | undefined): void {
    const reason = track.catchUp!.reason;
    track.catchUp = undefined;
    this.catchUpTimes.push(took);
    this.unblock(time, node, reason);
  }

  #checkForeign(time: number, node: string, track: NodeTrack, sample: KernelSample): void {
    const want = track.expectedForeign!;
    if (want.length === sample.foreign.length && want.every((r, i) => r === sample.foreign[i])) {
      track.lastForeignMismatch = "";
      return;
    }
    const have = new Set(sample.foreign);
    const wanted = new Set(want);
    const missing = want.filter((r) => !have.has(r));
    const extra = sample.foreign.filter((r) => !wanted.has(r));
    const text = `missing: ${missing.join("; ") || "none"}; unexpected: ${
      extra.join("; ") || "none"
    }`;
    if (text === track.lastForeignMismatch) return;
    track.lastForeignMismatch = text;
    this.#violation({
      invariant: "foreign",
      at: time,
      node,
      subject: (missing[0] ?? extra[0] ?? "").replace(/^.*\((.*)\)$/, "$1"),
      detail: `foreign rules changed: ${text}`,
    });
  }

  /** Judges the findings whose window has passed; call it regularly and once at the end. */
  tick(time: number, final = false): void {
    const lag = this.bounds.lagMs;
    const stale = this.#viewLostAt;
    const due = (at: number) =>
      final || (time >= at + lag && (stale === undefined || at + lag < stale));
    const dips = this.#dips.filter((d) => due(d.missingAt));
    this.#dips = this.#dips.filter((d) => !due(d.missingAt));
    for (const dip of dips) {
      if (!this.desired.heldThroughout(dip.key, dip.staleSince - lag, dip.missingAt + lag)) {
        continue;
      }
      const back = this.#node(dip.node).prevPresent?.has(dip.key);
      this.#violation({
        invariant: "no-dip",
        faults: dip.faults,
        at: dip.missingAt,
        node: dip.node,
        subject: dip.key,
        detail: `desired rule present at ${seconds(dip.lastSeen)} and missing at ` +
          `${seconds(dip.missingAt)} without an outside flush (${
            back ? "back since" : "still missing"
          })`,
      });
    }
    const safety = this.#safety.filter((f) => due(f.at));
    this.#safety = this.#safety.filter((f) => !due(f.at));
    for (const f of safety) {
      if (!this.desired.absentThroughout(f.key, f.since, f.at + lag)) {
        this.#node(f.node).reportedSafety.delete(f.key);
        continue;
      }
      this.#violation({
        invariant: "safety",
        faults: f.faults,
        at: f.at,
        node: f.node,
        subject: f.key,
        detail: `own rule still present ${f.at - f.since} ms after no present IPRuleConfig ` +
          `asked for it with the node connected (bound ${this.bounds.safetyMs} ms)`,
      });
    }
    const checks = this.#configChecks.filter((c) => due(c.at));
    this.#configChecks = this.#configChecks.filter((c) => !due(c.at));
    for (const check of checks) {
      this.checks.configs++;
      if (check.what === "written") {
        const pair = `${check.name}: ${check.key}`;
        if (!this.plannedRules.absentThroughout(pair, check.at - lag, check.at + lag)) continue;
        this.#violation({
          invariant: "nothing-lost",
          faults: check.faults,
          at: check.at,
          subject: check.name,
          detail: `IPRuleConfig written asking for "${check.key}", which the planner did not ` +
            `ask for from ${lag} ms before to ${lag} ms after (a stale or lost write)`,
        });
        continue;
      }
      if (!this.planned.heldThroughout(check.name, check.at - lag, check.at + lag)) continue;
      this.#violation({
        invariant: "nothing-lost",
        faults: check.faults,
        at: check.at,
        subject: check.name,
        detail: `IPRuleConfig ${check.what} while the planner wanted it present (from the ` +
          `Services and IPRules from ${lag} ms before to ${lag} ms after)`,
      });
    }
  }

  /** Records the outcome of the final convergence check. */
  finalResult(time: number, differences: readonly string[], convergedAfterMs?: number): void {
    this.checks.final++;
    if (differences.length === 0) return;
    this.#violation({
      invariant: "liveness",
      at: time,
      subject: differences[0]!,
      detail: `not converged ${
        convergedAfterMs === undefined ? "" : `${convergedAfterMs} ms `
      }after the last fault (bound ${this.bounds.convergenceMs} ms): ${
        differences.slice(0, 10).join("; ")
      }${differences.length > 10 ? `; and ${differences.length - 10} more` : ""}`,
    });
  }
}

/** `12.345s`. */
export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(3)}s`;
}
