/**
 * When the agent reconciles: one reconcile at a time, never two at once; watch events are
 * debounced (a burst of config changes becomes one reconcile), kernel changes run at once, and
 * a periodic resync follows every reconcile after the resync period. Timers only, no I/O.
 */

/** Why a reconcile runs, for logs and metrics. */
export type Trigger = "start" | "watch" | "kernel" | "resync";

/** How the scheduler waits. */
export interface SchedulerOptions {
  /** Delay between the first watch event of a burst and its reconcile. */
  debounceMs: number;
  /** Delay from the end of one reconcile to the next periodic one. */
  resyncMs: number;
  /** A reconcile that threw; the next trigger (at the latest the resync) runs it again. */
  onError?: (error: unknown, trigger: Trigger) => void;
}

/** Runs `reconcile` on triggers, one at a time, until stopped. */
export class ReconcileScheduler {
  readonly #reconcile: (trigger: Trigger) => Promise<void>;
  readonly #options: SchedulerOptions;
  #debounce: ReturnType<typeof setTimeout> | undefined;
  #resync: ReturnType<typeof setTimeout> | undefined;
  /** The trigger of the next run, while one is due. */
  #due: Trigger | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;
  #started = false;
  /** Callers of `settled` waiting for the scheduler to be idle. */
  #idle: (() => void)[] = [];

  constructor(reconcile: (trigger: Trigger) => Promise<void>, options: SchedulerOptions) {
    this.#reconcile = reconcile;
    this.#options = options;
  }

  /** Starts with one reconcile at once; requests before it are dropped (it covers them). */
  start(): void {
    if (this.#started || this.#stopped) return;
    this.#started = true;
    this.#due = "start";
    this.#kick();
  }

  /** Asks for a reconcile: `watch` after the debounce delay, every other trigger at once. */
  request(trigger: Trigger): void {
    if (this.#stopped || !this.#started) return;
    if (trigger === "watch") {
      if (this.#due !== undefined || this.#debounce !== undefined) return;
      this.#debounce = setTimeout(() => {
        this.#debounce = undefined;
        this.#due ??= "watch";
        this.#kick();
      }, this.#options.debounceMs);
      return;
    }
    this.#due ??= trigger;
    this.#kick();
  }

  /** Whether a reconcile is running or due. */
  get busy(): boolean {
    return this.#running !== undefined || this.#due !== undefined || this.#debounce !== undefined;
  }

  /** Resolves once no reconcile is running or due (a debounced request counts as due). */
  settled(): Promise<void> {
    if (!this.busy) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Stops every timer and waits for the running reconcile, if any. Idempotent. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#due = undefined;
    clearTimeout(this.#debounce);
    clearTimeout(this.#resync);
    this.#debounce = undefined;
    this.#resync = undefined;
    await this.#running;
    this.#settle();
  }

  #settle(): void {
    if (!this.busy) { for (const resolve of this.#idle.splice(0)) resolve(); }
  }

  #kick(): void {
    if (!this.#started || this.#running !== undefined || this.#due === undefined) return;
    const trigger = this.#due;
    this.#due = undefined;
    clearTimeout(this.#resync);
    this.#resync = undefined;
    if (trigger !== "watch" && this.#debounce !== undefined) {
      // This run reads the cache as it is now: it covers the pending watch events too.
      clearTimeout(this.#debounce);
      this.#debounce = undefined;
    }
    this.#running = this.#run(trigger);
  }

  async #run(trigger: Trigger): Promise<void> {
    try {
      await this.#reconcile(trigger);
    } catch (error: unknown) {
      this.#options.onError?.(error, trigger);
    } finally {
      this.#running = undefined;
      if (!this.#stopped) {
        this.#resync = setTimeout(() => {
          this.#resync = undefined;
          this.request("resync");
        }, this.#options.resyncMs);
        this.#kick();
      }
      this.#settle();
    }
  }
}
