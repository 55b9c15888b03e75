import assert from "node:assert/strict";
import { API_VERSION } from "../api/types.ts";
import { ControllerMetrics } from "./metrics.ts";

Deno.test("ControllerMetrics exports the leader's state series at each scrape, none while standing by", async () => {
  const metrics = new ControllerMetrics();
  const standby = await metrics.registry.metrics();
  assert.doesNotMatch(standby, /^iprule_controller_node_converged\{/m);
  assert.match(standby, /^iprule_controller_workqueue_depth 0$/m);

  let depth = 3;
  metrics.queueLength = () => depth;
  metrics.stateSource = () => ({
    agents: [],
    nodes: [],
    nodeStates: new Map([["n1", {
      apiVersion: API_VERSION,
      kind: "IPRuleNodeState",
      metadata: { name: "n1" },
      status: { desiredRules: 2, appliedRules: 1, failedCount: 1 },
    }]]),
    ipRules: [],
  });
  const leading = await metrics.registry.metrics();
  assert.match(leading, /^iprule_controller_node_converged\{node="n1"\} 0$/m);
  assert.match(leading, /^iprule_controller_node_rules\{node="n1",state="failed"\} 1$/m);
  assert.match(leading, /^iprule_controller_workqueue_depth 3$/m);

  // Leadership lost: the series go with it instead of going stale.
  metrics.stateSource = undefined;
  depth = 0;
  assert.doesNotMatch(await metrics.registry.metrics(), /^iprule_controller_node_converged\{/m);
});

Deno.test("ControllerMetrics.observeRequest() counts responses by verb and code and times them", async () => {
  const metrics = new ControllerMetrics();
  metrics.observeRequest("PATCH", 200, 0.02);
  metrics.observeRequest("PATCH", 500, 0.2);
  metrics.observeRequest("GET", 0, 5);
  const text = await metrics.registry.metrics();
  assert.match(text, /^iprule_controller_api_responses_total\{verb="PATCH",code="500"\} 1$/m);
  assert.match(text, /^iprule_controller_api_responses_total\{verb="GET",code="0"\} 1$/m);
  assert.match(text, /^iprule_controller_api_request_duration_seconds_count\{verb="PATCH"\} 2$/m);
});
