/**
 * Pacing of one object's status writes (pure: the clock is passed in). A fleet of agents each
 * writing its IPRuleNodeState on every count change floods the API server (issue 18: ~17 writes
 * per node for a 200-Service burst), so a writer coalesces: an ordinary change is written one
 * interval after it appeared, and at most once per interval (the interval jittered so that
 * nodes do not write in step); whatever is pending then is written, so the last state always
 * is (trailing). Changes that others act on at once (a node's convergence flipping, its failed
 * set changing, a drain finishing; the Agent's Ready flipping) are urgent: written as soon as a
 * short floor has passed since the last write.
 *
 * No leading write for ordinary changes, not even a writer's first: a count change written at
 * once would hold the urgent change that follows it (e.g. the last rule of a drain removed)
 * behind the floor, and make an uninstall slower than without pacing.
 */

/** Jitter of each interval as a fraction of it: ±10 %. */
export const DEFAULT_JITTER = 0.1;
/** Shortest gap before an urgent write, ms (bounded by the interval). */
export const URGENT_FLOOR_MS = 1000;
/** Default interval between ordinary status writes, ms. */
export const DEFAULT_STATUS_INTERVAL_MS = 10_000;

/** How a writer's status writes are paced. */
export interface PacingOptions {
  /** Interval between ordinary writes, ms. */
  intervalMs: number;
  /** Fraction the interval varies by, each window drawn anew; default {@link DEFAULT_JITTER}. */
  jitter?: number;
  /** Gap before an urgent write; default the smaller of {@link URGENT_FLOOR_MS} and the interval. */
  floorMs?: number;
}

/** One window's length: `intervalMs` × (1 ± `jitter`), for `random` in [0, 1). */
export function jitteredInterval(intervalMs: number, jitter: number, random: number): number {
  return intervalMs * (1 + jitter * (2 * random - 1));
}

/** What the decision reads: when the last write was made and when the pending change appeared. */
export interface PacerState {
  /** Time of the last write; undefined before the first. */
  lastWriteAt: number | undefined;
  /** When the state first differed from the written one since; undefined when it does not. */
  pendingSince: number | undefined;
  /** The current window's interval (jittered), ms. */
  intervalMs: number;
}

/**
 * The time at which a pending write may go (≥ `now`): for an urgent change once the floor has
 * passed since the last write; for an ordinary one an interval after it appeared and after the
 * last write. Before the first write, the last one counts as long ago.
 */
export function writeDueAt(
  state: PacerState,
  now: number,
  urgent: boolean,
  floorMs: number,
): number {
  const { lastWriteAt = -Infinity, pendingSince = now, intervalMs } = state;
  if (urgent) return Math.max(now, lastWriteAt + floorMs);
  return Math.max(now, lastWriteAt + intervalMs, pendingSince + intervalMs);
}

/** The pacing state of one writer: `changed` and `settled` report, `dueAt` asks, `wrote` records. */
export class WritePacer {
  readonly intervalMs: number;
  readonly jitter: number;
  readonly floorMs: number;
  readonly #random: () => number;
  #state: PacerState;

  constructor(options: PacingOptions, random: () => number = Math.random) {
    this.intervalMs = options.intervalMs;
    this.jitter = options.jitter ?? DEFAULT_JITTER;
    this.floorMs = Math.min(options.floorMs ?? URGENT_FLOOR_MS, options.intervalMs);
    this.#random = random;
    this.#state = { lastWriteAt: undefined, pendingSince: undefined, intervalMs: this.#draw() };
  }

  #draw(): number {
    return jitteredInterval(this.intervalMs, this.jitter, this.#random());
  }

  /** The current state (for tests and logs). */
  get state(): Readonly<PacerState> {
    return this.#state;
  }

  /** The state differs from the written one at `now` (the first call since a write counts). */
  changed(now: number): void {
    this.#state.pendingSince ??= now;
  }

  /** The state is the written one again: nothing pending. */
  settled(): void {
    this.#state.pendingSince = undefined;
  }

  /** When the change pending `now` may be written; see {@link writeDueAt}. */
  dueAt(now: number, urgent: boolean): number {
    this.changed(now);
    return writeDueAt(this.#state, now, urgent, this.floorMs);
  }

  /** Records a write made at `now`: a new window with a newly drawn interval. */
  wrote(now: number): void {
    this.#state = { lastWriteAt: now, pendingSince: undefined, intervalMs: this.#draw() };
  }
}
