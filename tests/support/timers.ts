/** Test helper: the timers a piece of code leaves behind. */

/** Records the timers set through the global setTimeout that have neither fired nor been cleared. */
export function trackTimers(): { live: () => number; [Symbol.dispose]: () => void } {
  const { setTimeout: realSet, clearTimeout: realClear } = globalThis;
  const live = new Set<ReturnType<typeof setTimeout>>();
  globalThis.setTimeout = ((fn: () => void, ms?: number) => {
    const id = realSet(() => {
      live.delete(id);
      fn();
    }, ms);
    live.add(id);
    return id;
  }) as typeof setTimeout;
  globalThis.clearTimeout = ((id?: ReturnType<typeof setTimeout>) => {
    if (id !== undefined) live.delete(id);
    realClear(id);
  }) as typeof clearTimeout;
  return {
    live: () => live.size,
    [Symbol.dispose]: () => {
      for (const id of live) realClear(id);
      globalThis.setTimeout = realSet;
      globalThis.clearTimeout = realClear;
    },
  };
}
