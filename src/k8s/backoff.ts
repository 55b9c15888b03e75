/** Jittered exponential backoff and an abortable sleep, shared by every retry loop. */

/** Shape of a backoff: first delay, growth factor, ceiling. */
export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  factor: number;
}

/** Defaults: 250 ms doubling up to 30 s. */
export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 250, maxMs: 30_000, factor: 2 };

/**
 * Delay before retry number `attempt` (0-based): exponential up to the ceiling, then a random
 * factor in [0.5, 1) so that many clients retrying together spread out.
 */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const base = Math.min(options.maxMs, options.initialMs * options.factor ** Math.max(0, attempt));
  return Math.round(base * (0.5 + random() / 2));
}

/** setTimeout's longest delay: a longer one fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Resolves after `ms`, or at once when the signal aborts (never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** A monotonic clock with an abortable sleep: the real one by default, a manual one in tests. */
export interface Timer {
  /** Monotonic time, ms. */
  now(): number;
  /** Resolves after `ms`, or at once when the signal aborts (never rejects). */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** `performance.now` and `sleep`. */
export const REAL_TIMER: Timer = { now: () => performance.now(), sleep };
