import assert from "node:assert/strict";
import { API_VERSION, type IPRuleConfig } from "../api/types.ts";
import { configMetadataPatch } from "./config_migration.ts";

function config(metadata: Partial<IPRuleConfig["metadata"]>): IPRuleConfig {
  return {
    apiVersion: API_VERSION,
    kind: "IPRuleConfig",
    metadata: { name: "iprc-10-96-1-50", ...metadata },
    spec: { serviceIP: "10.96.1.50", table: 100, priority: 1000, state: "present" },
  };
}

const ruleOwner = {
  apiVersion: API_VERSION,
  kind: "IPRule",
  name: "dc-a",
  uid: "u1",
  controller: true,
};

Deno.test("configMetadataPatch() moves a config off the original operator's marks", () => {
  assert.deepEqual(
    configMetadataPatch(config({
      labels: { "managed-by": "ip-rule-operator" },
      annotations: {
        "iprule.operator.brtrm.dev/spec-hash": "abc",
        "cleanup.iprule.agent.brtrm.dev/n1": "done",
        mine: "x",
      },
      ownerReferences: [ruleOwner],
    })),
    {
      labels: { "managed-by": null, "app.kubernetes.io/managed-by": "ip-rule-operator" },
      annotations: {
        "iprule.operator.brtrm.dev/spec-hash": null,
        "cleanup.iprule.agent.brtrm.dev/n1": null,
      },
      ownerReferences: null,
    },
  );
});

Deno.test("configMetadataPatch() keeps owner references and labels that are not the original's", () => {
  const other = { apiVersion: "v1", kind: "ConfigMap", name: "x", uid: "u2" };
  assert.deepEqual(configMetadataPatch(config({ ownerReferences: [ruleOwner, other] })), {
    ownerReferences: [other],
  });
  // Another value of the label is someone else's: left alone.
  assert.deepEqual(configMetadataPatch(config({ labels: { "managed-by": "helm" } })), {});
});

Deno.test("configMetadataPatch() is empty for our own configs", () => {
  assert.deepEqual(
    configMetadataPatch(config({ labels: { "app.kubernetes.io/managed-by": "ip-rule-operator" } })),
    {},
  );
  assert.deepEqual(configMetadataPatch(undefined), {});
});
