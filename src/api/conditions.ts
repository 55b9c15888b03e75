/** Status conditions: set one keeping lastTransitionTime unless the status flips (pure). */
import type { Condition } from "./types.ts";

/** A condition without its transition time, as a reconcile computes it. */
export type DesiredCondition = Omit<Condition, "lastTransitionTime">;

/**
 * The conditions after setting `desired`: the transition time moves only when the condition's
 * status changes; other conditions are kept.
 */
export function setCondition(
  existing: readonly Condition[] | undefined,
  desired: DesiredCondition,
  now: string,
): Condition[] {
  const list = [...(existing ?? [])];
  const i = list.findIndex((c) => c.type === desired.type);
  const previous = i >= 0 ? list[i] : undefined;
  const lastTransitionTime = previous && previous.status === desired.status
    ? previous.lastTransitionTime
    : now;
  const next: Condition = { ...desired, lastTransitionTime };
  if (i >= 0) list[i] = next;
  else list.push(next);
  return list;
}

/** Whether two condition lists say the same (order-insensitive, all fields). */
export function sameConditions(
  a: readonly Condition[] | undefined,
  b: readonly Condition[] | undefined,
): boolean {
  const x = a ?? [];
  const y = b ?? [];
  if (x.length !== y.length) return false;
  return x.every((c) => {
    const d = y.find((e) => e.type === c.type);
    return d !== undefined && d.status === c.status && d.reason === c.reason &&
      d.message === c.message && d.lastTransitionTime === c.lastTransitionTime &&
      d.observedGeneration === c.observedGeneration;
  });
}

/** How many names a set has, and its first few: what a message shows of a large set. */
export interface NameSample {
  count: number;
  /** At most five of them. */
  names: readonly string[];
}

/** The size and first five names of a set, in its iteration order (O(5), not O(size)). */
export function nameSample(names: Iterable<string>, count: number): NameSample {
  const shown: string[] = [];
  for (const name of names) {
    if (shown.length === 5) break;
    shown.push(name);
  }
  return { count, names: shown };
}

/**
 * Names for a condition message (nodes, configs): the first five and how many more (of
 * `total`, default all of `names`), so a message stays far below the CRD's 32768-character
 * limit on any cluster.
 */
export function nameList(names: readonly string[], total = names.length): string {
  const shown = names.slice(0, 5);
  return total > shown.length
    ? `${shown.join(", ")} and ${total - shown.length} more`
    : shown.join(", ");
}
