import type { LabelSelector } from "../api/types.ts";

/**
 * Whether labels satisfy a Kubernetes label selector (matchLabels AND every expression).
 * An absent selector matches everything, as in the API. Hand-written: a dozen lines of
 * well-specified semantics that no small, maintained npm package provides on plain objects.
 */
export function selectorMatches(
  selector: LabelSelector | undefined,
  labels: Readonly<Record<string, string>>,
): boolean {
  if (!selector) return true;
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    if (labels[key] !== value) return false;
  }
  for (const { key, operator, values = [] } of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, key);
    const ok = operator === "Exists"
      ? has
      : operator === "DoesNotExist"
      ? !has
      : operator === "In"
      ? has && values.includes(labels[key]!)
      : !has || !values.includes(labels[key]!);
    if (!ok) return false;
  }
  return true;
}
