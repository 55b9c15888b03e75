/**
 * Authentication and authorization of /metrics requests in the manner of controller-runtime's
 * `filters.WithAuthenticationAndAuthorization` (kubebuilder's default): the bearer token is
 * reviewed by the API server (TokenReview), and its user must be allowed `get` on the
 * non-resource URL `/metrics` (SubjectAccessReview), which the `metrics-reader` ClusterRole
 * grants. Results are cached like controller-runtime's delegating authenticator and
 * authorizer (token 1 min; allowed 5 min, denied 30 s), so a scrape every 15 s costs the API
 * server a few reviews an hour.
 *
 * @module
 */
import type { JsonObject } from "../k8s/client.ts";

/** A user as TokenReview reports it. */
export interface UserInfo {
  username: string;
  uid?: string;
  groups: string[];
  extra?: Record<string, string[]>;
}

/** The outcome of one request's check: allowed, or the HTTP status and why not. */
export type AccessDecision =
  | { allowed: true; user: UserInfo }
  | { allowed: false; status: 401 | 403 | 500; reason: string };

/** The one API call the checks need (KubeClient.request). */
export interface ReviewClient {
  request(method: string, path: string, options: { body: unknown }): Promise<JsonObject>;
}

/** Cache lifetimes, in milliseconds. */
export interface AuthCacheOptions {
  tokenTtlMs?: number;
  /** Failed token reviews, kept shorter so a fixed token works soon. */
  tokenFailureTtlMs?: number;
  allowTtlMs?: number;
  denyTtlMs?: number;
  /** Entries per cache; the oldest goes first. */
  maxEntries?: number;
  now?: () => number;
}

const TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews";
const ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews";

/** The token of an `Authorization: Bearer <token>` header; undefined when there is none. */
export function bearerToken(header: string | null): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  return match?.[1];
}

/** The TokenReview to send for a token. */
export function tokenReview(token: string): JsonObject {
  return { apiVersion: "authentication.k8s.io/v1", kind: "TokenReview", spec: { token } };
}

/** The user of a TokenReview response; undefined when the token is not authenticated. */
export function reviewedUser(review: JsonObject): UserInfo | undefined {
  // deno-lint-ignore no-explicit-any
  const status = (review as any).status;
  if (status?.authenticated !== true || typeof status.user?.username !== "string") return;
  const user: UserInfo = {
    username: status.user.username,
    groups: Array.isArray(status.user.groups) ? status.user.groups : [],
  };
  if (typeof status.user.uid === "string") user.uid = status.user.uid;
  if (status.user.extra && typeof status.user.extra === "object") user.extra = status.user.extra;
  return user;
}

/** The SubjectAccessReview asking whether `user` may `verb` the non-resource URL `path`. */
export function accessReview(user: UserInfo, verb: string, path: string): JsonObject {
  return {
    apiVersion: "authorization.k8s.io/v1",
    kind: "SubjectAccessReview",
    spec: {
      user: user.username,
      groups: user.groups,
      ...(user.uid !== undefined ? { uid: user.uid } : {}),
      ...(user.extra !== undefined ? { extra: user.extra } : {}),
      nonResourceAttributes: { path, verb },
    },
  };
}

/** Whether a SubjectAccessReview response allows the request. */
export function reviewAllowed(review: JsonObject): boolean {
  // deno-lint-ignore no-explicit-any
  return (review as any).status?.allowed === true;
}

/** A small map whose entries expire; the oldest entry goes when it is full. */
class ExpiringCache<V> {
  readonly #entries = new Map<string, { value: V; expires: number }>();
  constructor(readonly max: number, readonly now: () => number) {}

  get(key: string): V | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expires > this.now()) return entry.value;
    this.#entries.delete(key);
    return undefined;
  }

  set(key: string, value: V, ttlMs: number): void {
    this.#entries.delete(key);
    if (this.#entries.size >= this.max) {
      this.#entries.delete(this.#entries.keys().next().value!);
    }
    this.#entries.set(key, { value, expires: this.now() + ttlMs });
  }
}

async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Checks /metrics requests against the API server, with cached reviews. */
export class MetricsAuth {
  readonly #client: ReviewClient;
  readonly #tokens: ExpiringCache<UserInfo | null>;
  readonly #access: ExpiringCache<boolean>;
  readonly #ttl: Required<Omit<AuthCacheOptions, "maxEntries" | "now">>;

  constructor(client: ReviewClient, options: AuthCacheOptions = {}) {
    this.#client = client;
    const now = options.now ?? Date.now;
    this.#tokens = new ExpiringCache(options.maxEntries ?? 1024, now);
    this.#access = new ExpiringCache(options.maxEntries ?? 1024, now);
    this.#ttl = {
      tokenTtlMs: options.tokenTtlMs ?? 60_000,
      tokenFailureTtlMs: options.tokenFailureTtlMs ?? 10_000,
      allowTtlMs: options.allowTtlMs ?? 300_000,
      denyTtlMs: options.denyTtlMs ?? 30_000,
    };
  }

  /** Authenticates and authorizes a request for `path` (verb from the HTTP method). */
  async check(request: Request, path: string): Promise<AccessDecision> {
    const token = bearerToken(request.headers.get("authorization"));
    if (token === undefined) {
      return { allowed: false, status: 401, reason: "No bearer token" };
    }
    let user: UserInfo | undefined;
    try {
      user = await this.#authenticate(token);
    } catch (error: unknown) {
      return { allowed: false, status: 500, reason: `TokenReview failed: ${message(error)}` };
    }
    if (user === undefined) {
      return { allowed: false, status: 401, reason: "Token not authenticated" };
    }
    const verb = request.method === "HEAD" ? "get" : request.method.toLowerCase();
    let allowed: boolean;
    try {
      allowed = await this.#authorize(user, verb, path);
    } catch (error: unknown) {
      return {
        allowed: false,
        status: 500,
        reason: `SubjectAccessReview failed: ${message(error)}`,
      };
    }
    return allowed ? { allowed: true, user } : {
      allowed: false,
      status: 403,
      reason: `User "${user.username}" may not ${verb} "${path}"`,
    };
  }

  async #authenticate(token: string): Promise<UserInfo | undefined> {
    const key = await sha256(token);
    const cached = this.#tokens.get(key);
    if (cached !== undefined) return cached ?? undefined;
    const user = reviewedUser(
      await this.#client.request("POST", TOKEN_REVIEWS, { body: tokenReview(token) }),
    );
    this.#tokens.set(
      key,
      user ?? null,
      user ? this.#ttl.tokenTtlMs : this.#ttl.tokenFailureTtlMs,
    );
    return user;
  }

  async #authorize(user: UserInfo, verb: string, path: string): Promise<boolean> {
    const review = accessReview(user, verb, path);
    const key = JSON.stringify(review.spec);
    const cached = this.#access.get(key);
    if (cached !== undefined) return cached;
    const allowed = reviewAllowed(
      await this.#client.request("POST", ACCESS_REVIEWS, { body: review }),
    );
    this.#access.set(key, allowed, allowed ? this.#ttl.allowTtlMs : this.#ttl.denyTtlMs);
    return allowed;
  }
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
