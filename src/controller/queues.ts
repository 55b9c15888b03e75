/**
 * The controller's two work queues, in the shape of controller-runtime's one controller per
 * kind with its own MaxConcurrentReconciles: configs (with the Agent and the resync) on many
 * workers, summaries (IPRule statuses, Service events) on one.
 *
 * Why apart: a stream of Service changes makes every IPRule's status due once a second. On the
 * config workers those ~50 status writes (with their Events) reached the API server at once and
 * held up the config writes beside them (bench:controller, 10k Services: config reconciles of
 * 50 ms beside IPRule reconciles of 100-200 ms, LB IP change → config p99 54 ms). One at a time,
 * a summary never competes with more than one request of ours; the configs never wait for one.
 */
import { parseWorkKey } from "./config_reconciler.ts";
import { WorkQueue } from "./workqueue.ts";

/**
 * Workers of the config queue. A config key is one API write, so the workers mostly wait on the
 * API server; in a burst (bench:e2e, 500 Services) 32 of them kept the config writes up with
 * the Services' changes (controller stage p99 0.4-0.5 s), where 16 let a queue build (1-2.3 s).
 */
export const CONFIG_WORKERS = 32;
/** Workers of the summary queue (see above). */
export const SUMMARY_WORKERS = 1;

/** Whether a queue key is a summary (IPRule status, Service events). */
export function isSummaryKey(key: string): boolean {
  const kind = parseWorkKey(key)?.kind;
  return kind === "iprule" || kind === "service";
}

/** Options of `ControllerQueues.run`. */
export interface RunOptions {
  signal: AbortSignal;
  onError?: (key: string, err: unknown, delayMs: number) => void;
}

/** Routes each key to its queue; runs both with one handler. */
export class ControllerQueues {
  readonly configs = new WorkQueue();
  readonly summaries = new WorkQueue();

  /** The queue a key belongs to. */
  of(key: string): WorkQueue {
    return isSummaryKey(key) ? this.summaries : this.configs;
  }

  /** Queues a key, after `delayMs` if given. */
  add(key: string, delayMs?: number): void {
    if (delayMs) this.of(key).addAfter(key, delayMs);
    else this.of(key).add(key);
  }

  /** Keys waiting in both queues. */
  get length(): number {
    return this.configs.length + this.summaries.length;
  }

  /** Runs both queues' workers until the signal aborts. */
  async run(handler: (key: string) => Promise<void>, options: RunOptions): Promise<void> {
    await Promise.all([
      this.configs.run(handler, { ...options, workers: CONFIG_WORKERS }),
      this.summaries.run(handler, { ...options, workers: SUMMARY_WORKERS }),
    ]);
  }
}
