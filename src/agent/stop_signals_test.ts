import assert from "node:assert/strict";
import { type Agent, API_VERSION, type NodeInfo } from "../api/types.ts";
import { ApiError } from "../k8s/client.ts";
import {
  type Known,
  latest,
  objectNotFound,
  stopInputOf,
  type StopKnowledge,
} from "./stop_signals.ts";

const NOW = "2026-01-01T00:00:00Z";

function agent(extra: { deleting?: boolean; nodeSelector?: Record<string, string> } = {}): Agent {
  return {
    apiVersion: API_VERSION,
    kind: "Agent",
    metadata: {
      name: "agent",
      namespace: "ops",
      ...(extra.deleting ? { deletionTimestamp: NOW } : {}),
    },
    spec: extra.nodeSelector ? { nodeSelector: extra.nodeSelector } : {},
  };
}

const known = <T>(object: T | undefined): Known<T> => ({ known: true, object });
const UNKNOWN = { known: false } as const;
const LINUX_NODE: NodeInfo = { name: "n1", labels: { "kubernetes.io/os": "linux", pool: "a" } };

/** Everything readable: a live install, the node selected, not marked. */
const LIVE: StopKnowledge = {
  namespace: known({ metadata: { name: "ops" } }),
  agent: known(agent()),
  nodeState: known({
    apiVersion: API_VERSION,
    kind: "IPRuleNodeState",
    metadata: { name: "n1" },
    spec: { drain: false },
  }),
  node: known(LINUX_NODE),
};

Deno.test("latest() takes the read made at stop, and the watch only when the read failed", () => {
  const watched = known("watched");
  assert.deepEqual(latest(known("read"), watched), known("read"));
  assert.deepEqual(latest(known<string>(undefined), watched), known(undefined), "read: gone");
  assert.deepEqual(latest(UNKNOWN, watched), watched);
  assert.deepEqual(latest(UNKNOWN, UNKNOWN), UNKNOWN);
});

Deno.test("stopInputOf() turns what is known at stop into the drain decision's input", () => {
  const rows: [string, Partial<StopKnowledge>, ReturnType<typeof stopInputOf>][] = [
    ["a live install", {}, {
      namespace: "live",
      agent: "live",
      drainMarked: false,
      selected: true,
    }],
    ["namespace being deleted", {
      namespace: known({ metadata: { name: "ops", deletionTimestamp: NOW } }),
    }, { namespace: "deleting", agent: "live", drainMarked: false, selected: true }],
    ["Agent deleted, no IPRuleNodeState (CRD gone)", {
      agent: known(undefined),
      nodeState: known(undefined),
    }, { namespace: "live", agent: "gone", drainMarked: false, selected: undefined }],
    ["Agent being deleted: no selection of its own", { agent: known(agent({ deleting: true })) }, {
      namespace: "live",
      agent: "deleting",
      drainMarked: false,
      selected: undefined,
    }],
    ["the node relabelled out of the Agent's selection", {
      agent: known(agent({ nodeSelector: { pool: "b" } })),
    }, { namespace: "live", agent: "live", drainMarked: false, selected: false }],
    ["the Node unreadable or gone", { node: UNKNOWN }, {
      namespace: "live",
      agent: "live",
      drainMarked: false,
      selected: undefined,
    }],
    ["nothing readable (token, RBAC and watches gone)", {
      namespace: UNKNOWN,
      agent: UNKNOWN,
      nodeState: UNKNOWN,
      node: UNKNOWN,
    }, { namespace: undefined, agent: undefined, drainMarked: undefined, selected: undefined }],
  ];
  for (const [name, change, expected] of rows) {
    assert.deepEqual(stopInputOf({ ...LIVE, ...change }), expected, name);
  }
});

Deno.test("objectNotFound() takes the object's NotFound, not a 404 of its kind or anything else", () => {
  const path = "/apis/api.operator.brtrm.dev/v1alpha1/namespaces/ops/agents/agent";
  const notFound = (message: string, reason = "NotFound") =>
    new ApiError("GET", path, 404, reason, message);
  assert.equal(
    objectNotFound(notFound('agents.api.operator.brtrm.dev "agent" not found'), "agent"),
    true,
  );
  // The CRD is gone, or not served yet by an API server that is starting.
  assert.equal(
    objectNotFound(notFound("the server could not find the requested resource"), "agent"),
    false,
  );
  assert.equal(objectNotFound(notFound("404 page not found", ""), "agent"), false);
  assert.equal(objectNotFound(notFound('agents "other" not found'), "agent"), false);
  assert.equal(objectNotFound(new ApiError("GET", path, 403, "Forbidden", "no"), "agent"), false);
  assert.equal(objectNotFound(new Error("agent not found"), "agent"), false);
});
