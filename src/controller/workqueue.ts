/**
 * A work queue in the manner of client-go's: a key queued many times is processed once, a key
 * is never processed by two workers at once (re-added while processing, it runs again after),
 * and failures are retried with per-key exponential backoff.
 */
import { backoffDelay, type BackoffOptions, MAX_TIMER_MS } from "../k8s/backoff.ts";

/** Backoff of a failing key: 50 ms doubling up to 60 s. */
const RETRY_BACKOFF: BackoffOptions = { initialMs: 50, maxMs: 60_000, factor: 2 };

/** A deduplicating, rate-limited work queue of string keys. */
export class WorkQueue {
  readonly #queue: string[] = [];
  readonly #dirty = new Set<string>();
  readonly #processing = new Set<string>();
  readonly #failures = new Map<string, number>();
  readonly #timers = new Map<string, { timer: ReturnType<typeof setTimeout>; due: number }>();
  readonly #waiters: (() => void)[] = [];
  #closed = false;

  /** Number of keys waiting (not counting those being processed or delayed). */
  get length(): number {
    return this.#queue.length;
  }

  /** Queues a key unless it is already waiting. */
  add(key: string): void {
    if (this.#closed || this.#dirty.has(key)) return;
    this.#dirty.add(key);
    if (this.#processing.has(key)) return; // re-queued when its worker is done
    this.#queue.push(key);
    this.#wakeOne();
  }

  /**
   * Queues a key after a delay; of several pending delays for a key the one due first wins (a
   * retry in 50 ms is not held back by a grace-period timer of minutes). Delays are capped at
   * 2^31-1 ms, beyond which setTimeout would fire at once.
   */
  addAfter(key: string, delayMs: number): void {
    if (this.#closed) return;
    if (delayMs <= 0) return this.add(key);
    const due = Date.now() + delayMs;
    const pending = this.#timers.get(key);
    if (pending !== undefined) {
      if (pending.due <= due) return;
      clearTimeout(pending.timer);
    }
    const timer = setTimeout(() => {
      this.#timers.delete(key);
      this.add(key);
    }, Math.min(delayMs, MAX_TIMER_MS));
    this.#timers.set(key, { timer, due });
  }

  /** Queues a failed key again after its backoff; returns the delay. */
  retry(key: string): number {
    const failures = this.#failures.get(key) ?? 0;
    this.#failures.set(key, failures + 1);
    const delay = backoffDelay(failures, RETRY_BACKOFF);
    this.addAfter(key, delay);
    return delay;
  }

  /** Clears a key's failure count after a success. */
  forget(key: string): void {
    this.#failures.delete(key);
  }

  /** Next key to process, waiting for one; undefined once the queue is closed. */
  async #next(): Promise<string | undefined> {
    while (!this.#closed) {
      const key = this.#queue.shift();
      if (key !== undefined) {
        this.#dirty.delete(key);
        this.#processing.add(key);
        return key;
      }
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
    return undefined;
  }

  #done(key: string): void {
    this.#processing.delete(key);
    if (this.#dirty.has(key)) {
      this.#queue.push(key);
      this.#wakeOne();
    }
  }

  /**
   * Runs `workers` concurrent workers until the signal aborts. A handler that throws gets
   * its key retried with backoff; `onError` sees the error and the delay.
   */
  async run(
    handler: (key: string) => Promise<void>,
    options: {
      workers?: number;
      signal: AbortSignal;
      onError?: (key: string, err: unknown, delayMs: number) => void;
    },
  ): Promise<void> {
    const stop = () => this.close();
    options.signal.addEventListener("abort", stop, { once: true });
    const worker = async () => {
      for (let key = await this.#next(); key !== undefined; key = await this.#next()) {
        try {
          await handler(key);
          this.forget(key);
        } catch (err: unknown) {
          // Retried whether or not anyone listens (an optional call skips its arguments).
          if (!this.#closed) {
            const delayMs = this.retry(key);
            options.onError?.(key, err, delayMs);
          }
        } finally {
          this.#done(key);
        }
      }
    };
    try {
      await Promise.all(Array.from({ length: options.workers ?? 1 }, worker));
    } finally {
      options.signal.removeEventListener("abort", stop);
    }
  }

  /** Stops the workers after their current key and drops pending delays. */
  close(): void {
    this.#closed = true;
    for (const { timer } of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    this.#wakeAll();
  }

  #wakeOne(): void {
    this.#waiters.shift()?.();
  }

  #wakeAll(): void {
    for (const wake of this.#waiters.splice(0)) wake();
  }
}
