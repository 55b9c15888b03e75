/**
 * A part the tests of one file share because it is slow to start (a control plane, a topology of
 * node namespaces): the first test that asks for it starts it, so that every test also runs alone
 * (`deno test --filter`), and it lives until the test process exits, when the parts' own exit
 * handlers kill their processes and remove their namespaces and directories. Tests that share a
 * part turn off the resource and op sanitizers (the part outlives each of them) and remove their
 * own objects and processes, also when they fail.
 *
 * @module
 */

/** Test options of a test that uses a shared part. */
export const SHARED: Pick<Deno.TestDefinition, "sanitizeResources" | "sanitizeOps"> = {
  sanitizeResources: false,
  sanitizeOps: false,
};

/** `start`, run once, by the first caller; every caller gets its result (or its error). */
export function sharedPart<T>(start: () => Promise<T>): () => Promise<T> {
  let part: Promise<T> | undefined;
  return () => (part ??= start());
}

/** Kills processes still running when the test process exits (e.g. agents kept across tests). */
export function killAtExit(pid: () => number | undefined): void {
  globalThis.addEventListener("unload", () => {
    const id = pid();
    if (id === undefined) return;
    try {
      Deno.kill(id, "SIGKILL");
    } catch {
      // Already gone.
    }
  });
}

/** A scenario's hold on a shared part: readied before its body, cleaned up after it. */
export interface Scenario {
  /** Brings the shared part to the state every scenario starts from (e.g. agents running). */
  prepare(): Promise<void>;
  /** Removes what the scenario made, also after a failure. */
  cleanup(): Promise<void>;
  /** Shows what helps to understand a failure (e.g. the tails of the logs). */
  printLogs?(): Promise<void>;
}

/** A test `name` (with `SHARED`) running `body` on a scenario that `open` makes. */
export function scenarioTest<S extends Scenario>(
  name: string,
  open: () => Promise<S>,
  body: (scenario: S) => Promise<void>,
): void {
  Deno.test(name, SHARED, async () => {
    const scenario = await open();
    try {
      await scenario.prepare();
      await body(scenario);
    } catch (error: unknown) {
      await scenario.printLogs?.();
      throw error;
    } finally {
      await scenario.cleanup();
    }
  });
}
