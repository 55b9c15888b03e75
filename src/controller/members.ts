/**
 * A set of keys that is nearly always one key (the Services at one source address or one LB
 * IP), kept as that key until a second joins: a `Set` apiece would cost an allocation and about
 * a hundred bytes per entry, tens of thousands of times over in a large cluster.
 */

/** One key, or a Set of two or more. */
export type Members = string | Set<string>;

/** `members` with `key` added. */
export function withMember(members: Members | undefined, key: string): Members {
  if (members === undefined || members === key) return key;
  if (typeof members === "string") return new Set([members, key]);
  return members.add(key);
}

/** `members` without `key`; undefined once none is left. */
export function withoutMember(members: Members | undefined, key: string): Members | undefined {
  if (typeof members !== "object") return members === key ? undefined : members;
  members.delete(key);
  if (members.size > 1) return members;
  const [last] = members;
  return last;
}

/** The keys, in no particular order. */
export function eachMember(members: Members | undefined): Iterable<string> {
  return members === undefined ? [] : typeof members === "string" ? [members] : members;
}
