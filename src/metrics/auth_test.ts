import assert from "node:assert/strict";
import type { JsonObject } from "../k8s/client.ts";
import { accessReview, bearerToken, MetricsAuth, type ReviewClient } from "./auth.ts";

/**
 * The API server's side of the reviews, in memory: the unit tier has no API server (the real
 * one answers in tests/apiserver/metrics_auth_test.ts). Records every request.
 */
class Reviews implements ReviewClient {
  readonly calls: string[] = [];
  users = new Map([["good-token", { username: "system:serviceaccount:mon:prometheus" }]]);
  allowed = new Set(["system:serviceaccount:mon:prometheus get /metrics"]);
  fail = false;

  request(_method: string, path: string, { body }: { body: unknown }): Promise<JsonObject> {
    this.calls.push(path.split("/").pop()!);
    if (this.fail) return Promise.reject(new Error("connection refused"));
    // deno-lint-ignore no-explicit-any
    const spec = (body as any).spec;
    if (path.endsWith("/tokenreviews")) {
      const user = this.users.get(spec.token);
      return Promise.resolve({
        status: user
          ? { authenticated: true, user: { ...user, groups: ["system:serviceaccounts"] } }
          : { authenticated: false, error: "invalid bearer token" },
      });
    }
    const key =
      `${spec.user} ${spec.nonResourceAttributes.verb} ${spec.nonResourceAttributes.path}`;
    return Promise.resolve({ status: { allowed: this.allowed.has(key) } });
  }
}

const get = (token?: string, method = "GET") =>
  new Request("https://node:9472/metrics", {
    method,
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });

Deno.test("bearerToken() reads only a well-formed bearer header", () => {
  assert.equal(bearerToken("Bearer abc.def"), "abc.def");
  assert.equal(bearerToken("bearer  abc "), "abc");
  assert.equal(bearerToken("Basic dXNlcg=="), undefined);
  assert.equal(bearerToken("Bearer"), undefined);
  assert.equal(bearerToken("Bearer a b"), undefined);
  assert.equal(bearerToken(null), undefined);
});

Deno.test("accessReview() asks for the verb on the non-resource URL with the user's groups", () => {
  assert.deepEqual(
    accessReview({ username: "u", uid: "1", groups: ["g"], extra: { k: ["v"] } }, "get", "/metrics")
      .spec,
    {
      user: "u",
      groups: ["g"],
      uid: "1",
      extra: { k: ["v"] },
      nonResourceAttributes: { path: "/metrics", verb: "get" },
    },
  );
});

Deno.test("MetricsAuth.check() answers 401 without a valid token, 403 without the role, else allows", async () => {
  const reviews = new Reviews();
  const auth = new MetricsAuth(reviews);
  const none = await auth.check(get(), "/metrics");
  assert.deepEqual(none, { allowed: false, status: 401, reason: "No bearer token" });
  assert.deepEqual(reviews.calls, [], "no review without a token");

  const bad = await auth.check(get("forged"), "/metrics");
  assert.equal(bad.allowed, false);
  assert.equal(!bad.allowed && bad.status, 401);

  reviews.users.set("other-token", { username: "system:serviceaccount:default:app" });
  const denied = await auth.check(get("other-token"), "/metrics");
  assert.deepEqual(denied, {
    allowed: false,
    status: 403,
    reason: 'User "system:serviceaccount:default:app" may not get "/metrics"',
  });

  const ok = await auth.check(get("good-token"), "/metrics");
  assert.equal(ok.allowed, true);
  assert.equal(ok.allowed && ok.user.username, "system:serviceaccount:mon:prometheus");
  // HEAD reads like GET; other methods are other verbs the role does not grant.
  assert.equal((await auth.check(get("good-token", "HEAD"), "/metrics")).allowed, true);
  const post = await auth.check(get("good-token", "POST"), "/metrics");
  assert.equal(!post.allowed && post.status, 403);
});

Deno.test("MetricsAuth.check() caches reviews: tokens 1 min, allowed 5 min, denied 30 s", async () => {
  const reviews = new Reviews();
  let now = 0;
  const auth = new MetricsAuth(reviews, { now: () => now });
  reviews.users.set("other-token", { username: "app" });
  for (let i = 0; i < 3; i++) {
    assert.equal((await auth.check(get("good-token"), "/metrics")).allowed, true);
    assert.equal((await auth.check(get("other-token"), "/metrics")).allowed, false);
  }
  assert.deepEqual(reviews.calls.sort(), [
    "subjectaccessreviews",
    "subjectaccessreviews",
    "tokenreviews",
    "tokenreviews",
  ]);
  // The role is granted: after 30 s the denial is asked again, the tokens are still cached.
  reviews.allowed.add("app get /metrics");
  now = 31_000;
  reviews.calls.length = 0;
  assert.equal((await auth.check(get("other-token"), "/metrics")).allowed, true);
  assert.deepEqual(reviews.calls, ["subjectaccessreviews"]);
  // The role is revoked: still allowed from the cache until 5 min, then refused.
  reviews.allowed.clear();
  now = 200_000;
  assert.equal((await auth.check(get("good-token"), "/metrics")).allowed, true);
  now = 301_000;
  const revoked = await auth.check(get("good-token"), "/metrics");
  assert.equal(!revoked.allowed && revoked.status, 403);
});

Deno.test("MetricsAuth.check() answers 500 when the API server cannot be asked, and caches nothing", async () => {
  const reviews = new Reviews();
  const auth = new MetricsAuth(reviews);
  reviews.fail = true;
  const failed = await auth.check(get("good-token"), "/metrics");
  assert.deepEqual(failed, {
    allowed: false,
    status: 500,
    reason: "TokenReview failed: connection refused",
  });
  reviews.fail = false;
  assert.equal((await auth.check(get("good-token"), "/metrics")).allowed, true);
});
