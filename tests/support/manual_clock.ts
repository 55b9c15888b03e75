/**
 * A clock that moves only when the test says (`advance`), with sleeps that end when it passes
 * their time: paced writers are tested on what they do at which time, not on how long a test
 * machine takes. Implements `Timer` (src/k8s/backoff.ts).
 *
 * @module
 */
import type { Timer } from "../../src/k8s/backoff.ts";

/** Lets pending promise callbacks and I/O completions run. */
function turn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

interface Sleeper {
  at: number;
  resolve: () => void;
}

/** A manual monotonic clock, ms. */
export class ManualClock implements Timer {
  #now: number;
  readonly #sleepers = new Set<Sleeper>();

  constructor(start = 0) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  /** Resolves once the clock reaches now + `ms`, or at once when the signal aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const sleeper: Sleeper = {
        at: this.#now + ms,
        resolve: () => {
          this.#sleepers.delete(sleeper);
          signal?.removeEventListener("abort", sleeper.resolve);
          resolve();
        },
      };
      this.#sleepers.add(sleeper);
      signal?.addEventListener("abort", sleeper.resolve, { once: true });
    });
  }

  /** When the earliest sleep ends; undefined when nothing sleeps. */
  get nextWake(): number | undefined {
    let next: number | undefined;
    for (const s of this.#sleepers) if (next === undefined || s.at < next) next = s.at;
    return next;
  }

  /** Moves the clock `ms` forward, waking each sleeper in turn at its own time. */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms;
    await turn();
    for (;;) {
      const next = this.nextWake;
      if (next === undefined || next > target) break;
      this.#now = Math.max(this.#now, next);
      for (const s of [...this.#sleepers]) if (s.at <= this.#now) s.resolve();
      await turn();
    }
    this.#now = target;
    await turn();
  }
}
