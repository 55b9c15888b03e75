/**
 * Objects exactly as the original Go operator writes them, for the migration tests (facts from
 * its API and controllers, written here in our words): its IPRuleConfigs carry its `managed-by`
 * label, a spec-hash annotation and a controller owner reference to the IPRule; its agents'
 * DaemonSet has our name, selector and container name but its own labels, template-hash
 * annotation, service account, env, resources and security context. Its writes come from
 * controller-runtime's default field manager, named after its binary: `manager`.
 *
 * @module
 */
import { GROUP, VERSION } from "../../src/api/types.ts";
import { DAEMONSET_NAME } from "../../src/controller/daemonset.ts";

// deno-lint-ignore no-explicit-any
type Json = any;

const API_VERSION = `${GROUP}/${VERSION}`;

/** The original's field manager. */
export const ORIGINAL_MANAGER = "manager";

/** An IPRuleConfig as the original writes it, owned by the IPRule `owner` (as the API returns it). */
export function originalConfig(
  name: string,
  spec: Json,
  owner: { metadata: { name: string; uid: string } },
  annotations: Record<string, string> = {},
): Json {
  return {
    apiVersion: API_VERSION,
    kind: "IPRuleConfig",
    metadata: {
      name,
      labels: { "managed-by": "ip-rule-operator" },
      annotations: { "iprule.operator.brtrm.dev/spec-hash": "5f0c8d1e", ...annotations },
      ownerReferences: [{
        apiVersion: API_VERSION,
        kind: "IPRule",
        name: owner.metadata.name,
        uid: owner.metadata.uid,
        controller: true,
        blockOwnerDeletion: true,
      }],
    },
    spec,
  };
}

/**
 * The IPRuleConfig the original writes for `serviceIP` matched by `rule` (as the API returns
 * it): named after the address, with the rule's table and priority, a missing priority as 0 (its
 * Go zero value, copied as is).
 */
export function originalConfigFor(
  rule: Json,
  serviceIP: string,
  options: { state?: "present" | "absent"; annotations?: Record<string, string> } = {},
): Json {
  return originalConfig(
    `iprc-${serviceIP.replaceAll(".", "-")}`,
    {
      serviceIP,
      table: rule.spec.table,
      priority: rule.spec.priority ?? 0,
      state: options.state ?? "present",
    },
    rule,
    options.annotations,
  );
}

/** The original's Agent (always named `agent`) in `namespace`. */
export function originalAgent(namespace: string, spec: Json): Json {
  return { apiVersion: API_VERSION, kind: "Agent", metadata: { name: "agent", namespace }, spec };
}

/** The agents' DaemonSet as the original's Agent controller creates it, owned by the Agent. */
export function originalDaemonSet(namespace: string, agentUid: string): Json {
  return {
    apiVersion: "apps/v1",
    kind: "DaemonSet",
    metadata: {
      name: DAEMONSET_NAME,
      namespace,
      labels: {
        app: "iprule-agent",
        "app.kubernetes.io/name": "ip-rule-operator",
        "managed-by": "ip-rule-operator",
      },
      ownerReferences: [{
        apiVersion: API_VERSION,
        kind: "Agent",
        name: "agent",
        uid: agentUid,
        controller: true,
        blockOwnerDeletion: true,
      }],
    },
    spec: {
      selector: { matchLabels: { app: "iprule-agent" } },
      updateStrategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 1 } },
      template: {
        metadata: {
          labels: { app: "iprule-agent" },
          annotations: { "iprule.operator.brtrm.dev/template-hash": "9b2f41c07d3e8a15" },
        },
        spec: {
          serviceAccountName: "iprule-agent",
          hostNetwork: true,
          dnsPolicy: "ClusterFirstWithHostNet",
          nodeSelector: { "kubernetes.io/os": "linux" },
          containers: [{
            name: "agent",
            image: "ghcr.io/mariusbertram/iprule-agent:v0.0.1",
            imagePullPolicy: "IfNotPresent",
            securityContext: {
              allowPrivilegeEscalation: false,
              capabilities: { add: ["NET_ADMIN"] },
              runAsNonRoot: false,
              runAsUser: 0,
            },
            env: [
              { name: "NODE_NAME", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
              { name: "RECONCILE_PERIOD", value: "10s" },
            ],
            resources: {
              requests: { cpu: "10m", memory: "16Mi" },
              limits: { cpu: "100m", memory: "64Mi" },
            },
          }],
        },
      },
    },
  };
}
