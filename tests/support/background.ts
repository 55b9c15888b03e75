/**
 * A loop run in the background with an abort signal, as the executables run theirs: `stop()`
 * (or `await using`) aborts it and waits for its end.
 *
 * @module
 */

/** A started loop and the means to stop it. */
export class Background implements AsyncDisposable {
  readonly #stop = new AbortController();
  readonly #done: Promise<unknown>;

  /** Starts `run` with the signal that `stop()` aborts. */
  constructor(run: (signal: AbortSignal) => Promise<unknown>) {
    this.#done = run(this.#stop.signal);
  }

  /** Aborts the loop and waits for it to end; throws what it threw. */
  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#done;
  }

  /** Same as `stop()`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}
