/**
 * Pacing of one object's status writes (pure: the clock is passed in). A fleet of agents each
 * writing its IPRuleNodeState on every count change floods the API server (issue 18: ~17 writes
 * per node for a 200-Service burst), so a writer coalesces: at most one ordinary write per
 * interval, jittered so that nodes do not write in step, and the state pending at the end of
 * the window is always written (trailing). Changes that others act on at once (a node's
 * convergence flipping, its failed set changing, a drain finishing; the Agent's Ready flipping)
 * are urgent: written after a short floor instead of the interval.
 *
 * A window opens with each write: an ordinary change waits until the window's end (at once
 * when the last write is older), an urgent one only `floorMs` after the last write. The
 * first write of a writer goes at once.
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

/** When a pending write is due, given when the last one was made. */
export interface PacerState {
  /** Time of the last write; undefined before the first. */
  lastWriteAt: number | undefined;
  /** End of the last write's window: ordinary writes wait for it. */
  windowEnd: number | undefined;
}

/**
 * The time at which a pending write may go (≥ `now`): at once before the first write, after
 * the floor for an urgent change, at the window's end for an ordinary one.
 */
export function writeDueAt(
  state: PacerState,
  now: number,
  urgent: boolean,
  floorMs: number,
): number {
  if (state.lastWriteAt === undefined || state.windowEnd === undefined) return now;
  return Math.max(now, urgent ? state.lastWriteAt + floorMs : state.windowEnd);
}

/** The pacing state of one writer: `dueAt` asks, `wrote` records. */
export class WritePacer {
  readonly intervalMs: number;
  readonly jitter: number;
  readonly floorMs: number;
  readonly #random: () => number;
  #state: PacerState = { lastWriteAt: undefined, windowEnd: undefined };

  constructor(options: PacingOptions, random: () => number = Math.random) {
    this.intervalMs = options.intervalMs;
    this.jitter = options.jitter ?? DEFAULT_JITTER;
    this.floorMs = Math.min(options.floorMs ?? URGENT_FLOOR_MS, options.intervalMs);
    this.#random = random;
  }

  /** The current state (for tests and logs). */
  get state(): Readonly<PacerState> {
    return this.#state;
  }

  /** When a write pending `now` may go; see {@link writeDueAt}. */
  dueAt(now: number, urgent: boolean): number {
    return writeDueAt(this.#state, now, urgent, this.floorMs);
  }

  /** Records a write made at `now`: the next ordinary one waits a jittered interval. */
  wrote(now: number): void {
    this.#state = {
      lastWriteAt: now,
      windowEnd: now + jitteredInterval(this.intervalMs, this.jitter, this.#random()),
    };
  }
}
