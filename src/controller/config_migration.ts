/**
 * Adoption of the original operator's IPRuleConfigs (pure). They have our names (`iprc-` and
 * the IPv4 address with dashes) and our spec fields, so the planner takes them as ours
 * (`isManagedConfig` accepts the original's `managed-by` label) and updates them in place: no
 * second config for the same address. What only the original wrote is rewritten in the same
 * write: its label moves to ours, its spec-hash and per-node cleanup annotations go (nothing
 * reads them any more, and its spec hash would be stale after our first spec change), and its
 * owner reference to the IPRule goes (ours is none: with it, deleting the IPRule would let the
 * garbage collector delete the config at once, skipping the absent state and grace period).
 *
 * The rewrite rides on the planner's next update of the config, which every config the original
 * wrote gets on the controller's first reconcile: the original fills no `ipRule`, `service` or
 * `services` (a present config's spec then differs), and no `absentSince` (an absent one's is
 * then set). A desired config with the right spec and the original's marks (restored from a
 * backup, say) is updated for its marks alone (`hasOriginalMarks`).
 */
import {
  GROUP,
  type IPRuleConfig,
  MANAGED_BY,
  MANAGED_BY_LABEL,
  ORIGINAL_MANAGED_BY_LABEL,
} from "../api/types.ts";

/** Annotation where the original kept the hash of a config's spec. */
export const ORIGINAL_SPEC_HASH_ANNOTATION = "iprule.operator.brtrm.dev/spec-hash";
/** Prefix of the original agents' per-node acknowledgements of an absent config. */
export const ORIGINAL_CLEANUP_ANNOTATION_PREFIX = "cleanup.iprule.agent.brtrm.dev/";

/** The metadata fields of a merge patch moving a config off the original's marks. */
export interface ConfigMetadataPatch {
  labels?: Record<string, string | null>;
  annotations?: Record<string, null>;
  ownerReferences?: IPRuleConfig["metadata"]["ownerReferences"] | null;
}

function isOriginalAnnotation(key: string): boolean {
  return key === ORIGINAL_SPEC_HASH_ANNOTATION ||
    key.startsWith(ORIGINAL_CLEANUP_ANNOTATION_PREFIX);
}

/** An owner reference the original set: to an IPRule of our API group. */
function isOriginalOwner(ref: { apiVersion: string; kind: string }): boolean {
  return ref.kind === "IPRule" && ref.apiVersion.split("/")[0] === GROUP;
}

/**
 * The metadata a write of `config` must also change to move it off the original's marks; empty
 * when it carries none (the check of "needs metadata migration").
 */
export function configMetadataPatch(config: IPRuleConfig | undefined): ConfigMetadataPatch {
  if (config === undefined) return {};
  const { labels = {}, annotations = {}, ownerReferences = [] } = config.metadata;
  const patch: ConfigMetadataPatch = {};
  if (labels[ORIGINAL_MANAGED_BY_LABEL] === MANAGED_BY) {
    patch.labels = { [ORIGINAL_MANAGED_BY_LABEL]: null, [MANAGED_BY_LABEL]: MANAGED_BY };
  }
  const stale = Object.keys(annotations).filter(isOriginalAnnotation);
  if (stale.length > 0) patch.annotations = Object.fromEntries(stale.map((k) => [k, null]));
  const kept = ownerReferences.filter((ref) => !isOriginalOwner(ref));
  if (kept.length < ownerReferences.length) {
    // A merge patch replaces a list whole.
    patch.ownerReferences = kept.length > 0 ? kept : null;
  }
  return patch;
}

/** Whether a config still carries marks of the original operator (see `configMetadataPatch`). */
export function hasOriginalMarks(config: IPRuleConfig): boolean {
  return Object.keys(configMetadataPatch(config)).length > 0;
}
