/** Kubernetes time formats. */

/** A `metav1.Time` (RFC 3339, seconds precision). */
export function apiTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/**
 * A `metav1.MicroTime` (RFC 3339 with microseconds), as Lease and events.k8s.io times need;
 * a plain Date or milliseconds are rejected by the API server.
 */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}
