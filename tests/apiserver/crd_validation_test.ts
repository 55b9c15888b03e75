/**
 * The API's validation, proven on a real kube-apiserver: every object in the reject table breaks
 * exactly one rule of the CRDs in `crds/` and must be refused with an error naming the field;
 * valid objects (IPv4, IPv6, dual-stack, boundaries) must be accepted with defaults filled in.
 */

import assert from "node:assert/strict";
import { MIN_RESYNC_MS, MIN_STATUS_INTERVAL_MS } from "../../src/agent/flags.ts";
import { durationFlag } from "../../src/cli.ts";
import {
  type ControlPlane,
  OPERATOR_NAMESPACE,
  startControlPlane,
} from "../support/controlplane.ts";

const API_VERSION = "api.operator.brtrm.dev/v1alpha1";
const REJECT_NAMESPACE = "crd-validation";

type Json = Record<string, unknown>;

/** An object that must be refused, and the field path the error must name. */
interface RejectCase {
  name: string;
  object: Json;
  field: string;
  /** A fragment of the server's reason, when it is worth pinning. */
  message?: string;
}

function ipRule(name: string, spec: Json): Json {
  return { apiVersion: API_VERSION, kind: "IPRule", metadata: { name }, spec };
}

function ipRuleConfig(name: string, spec: Json): Json {
  return { apiVersion: API_VERSION, kind: "IPRuleConfig", metadata: { name }, spec };
}

function agent(name: string, spec: Json, namespace = REJECT_NAMESPACE): Json {
  return { apiVersion: API_VERSION, kind: "Agent", metadata: { name, namespace }, spec };
}

/** A valid IPRule spec with one field replaced (`undefined` removes it). */
function ruleSpec(overrides: Json): Json {
  return withOverrides({ cidrs: ["192.168.1.0/24"], table: 100 }, overrides);
}

/** A valid IPRuleConfig spec with one field replaced (`undefined` removes it). */
function configSpec(overrides: Json): Json {
  return withOverrides(
    { serviceIP: "10.96.1.50", table: 100, priority: 1000, state: "present" },
    overrides,
  );
}

function withOverrides(base: Json, overrides: Json): Json {
  const spec: Json = { ...base, ...overrides };
  for (const [key, value] of Object.entries(overrides)) {
    if (value === undefined) delete spec[key];
  }
  return spec;
}

const cidrs65 = Array.from({ length: 65 }, (_, i) => `10.${i}.0.0/16`);

const REJECTED: RejectCase[] = [
  // IPRule selectors: as Kubernetes reads label selectors
  {
    name: "IPRule with a NotIn selector requirement without values",
    object: ipRule(
      "bad-notin",
      ruleSpec({ serviceSelector: { matchExpressions: [{ key: "tier", operator: "NotIn" }] } }),
    ),
    field: "spec.serviceSelector.matchExpressions[0]",
    message: "In and NotIn need values",
  },
  {
    name: "IPRule with an Exists namespace selector requirement with values",
    object: ipRule(
      "bad-exists",
      ruleSpec({
        namespaceSelector: {
          matchExpressions: [{ key: "team", operator: "Exists", values: ["a"] }],
        },
      }),
    ),
    field: "spec.namespaceSelector.matchExpressions[0]",
    message: "Exists and DoesNotExist take none",
  },
  // IPRule spec.cidrs
  {
    name: "IPRule with a CIDR that is not one",
    object: ipRule("bad-cidr-text", ruleSpec({ cidrs: ["not-a-cidr"] })),
    field: "spec.cidrs[0]",
    message: "must be an IPv4 or IPv6 CIDR",
  },
  {
    name: "IPRule with an IPv4 prefix length above 32",
    object: ipRule("bad-cidr-prefix", ruleSpec({ cidrs: ["192.168.1.0/33"] })),
    field: "spec.cidrs[0]",
    message: "must be an IPv4 or IPv6 CIDR",
  },
  {
    name: "IPRule with an address without prefix length",
    object: ipRule("bad-cidr-no-prefix", ruleSpec({ cidrs: ["192.168.1.0"] })),
    field: "spec.cidrs[0]",
    message: "must be an IPv4 or IPv6 CIDR",
  },
  {
    name: "IPRule with an invalid IPv6 CIDR",
    object: ipRule("bad-cidr-v6", ruleSpec({ cidrs: ["fd00::g/64"] })),
    field: "spec.cidrs[0]",
    message: "must be an IPv4 or IPv6 CIDR",
  },
  {
    name: "IPRule with an IPv4 CIDR with host bits set",
    object: ipRule("host-bits-v4", ruleSpec({ cidrs: ["192.168.1.5/24"] })),
    field: "spec.cidrs[0]",
    message: "must be canonical, with no host bits set",
  },
  {
    name: "IPRule with an IPv6 CIDR with host bits set",
    object: ipRule("host-bits-v6", ruleSpec({ cidrs: ["fd00::1/64"] })),
    field: "spec.cidrs[0]",
    message: "must be canonical, with no host bits set",
  },
  {
    name: "IPRule whose second CIDR has host bits set",
    object: ipRule("host-bits-second", ruleSpec({ cidrs: ["10.0.0.0/8", "172.16.0.1/12"] })),
    field: "spec.cidrs[1]",
    message: "must be canonical, with no host bits set",
  },
  {
    name: "IPRule with an IPv6 CIDR in uppercase",
    object: ipRule("not-canonical-upper", ruleSpec({ cidrs: ["FD00:10::/64"] })),
    field: "spec.cidrs[0]",
    message: "must be canonical",
  },
  {
    name: "IPRule with an IPv6 CIDR not compressed",
    object: ipRule("not-canonical-zeros", ruleSpec({ cidrs: ["fd00:10:0:0::/64"] })),
    field: "spec.cidrs[0]",
    message: "must be canonical",
  },
  {
    name: "IPRule with an IPv4 CIDR with leading zeros",
    object: ipRule("bad-cidr-leading-zero", ruleSpec({ cidrs: ["192.168.001.0/24"] })),
    field: "spec.cidrs[0]",
    message: "must be an IPv4 or IPv6 CIDR",
  },
  {
    name: "IPRule with an IPv4-mapped IPv6 CIDR",
    object: ipRule("bad-cidr-mapped", ruleSpec({ cidrs: ["::ffff:10.0.0.0/104"] })),
    field: "spec.cidrs[0]",
    message: "must be an IPv4 or IPv6 CIDR",
  },
  {
    name: "IPRule with empty cidrs",
    object: ipRule("cidrs-empty", ruleSpec({ cidrs: [] })),
    field: "spec.cidrs",
    message: "at least 1 items",
  },
  {
    name: "IPRule with 65 cidrs",
    object: ipRule("cidrs-65", ruleSpec({ cidrs: cidrs65 })),
    field: "spec.cidrs",
    message: "at most 64 items",
  },
  {
    name: "IPRule with duplicate CIDRs",
    object: ipRule("cidrs-duplicate", ruleSpec({ cidrs: ["10.0.0.0/8", "10.0.0.0/8"] })),
    field: "spec.cidrs[1]",
    message: "Duplicate value",
  },
  {
    name: "IPRule without cidrs",
    object: ipRule("cidrs-missing", ruleSpec({ cidrs: undefined })),
    field: "spec.cidrs",
    message: "Required value",
  },
  {
    name: "IPRule whose cidrs is a string, not a list",
    object: ipRule("cidrs-string", ruleSpec({ cidrs: "10.0.0.0/8" })),
    field: "spec.cidrs",
    message: "must be of type array",
  },
  {
    name: "IPRule whose CIDR is a number",
    object: ipRule("cidrs-number", ruleSpec({ cidrs: [10] })),
    field: "spec.cidrs[0]",
    message: "must be of type string",
  },
  // IPRule spec.cidr: the original operator's deprecated single CIDR
  {
    name: "IPRule with both the deprecated cidr and cidrs",
    object: ipRule("cidr-and-cidrs", ruleSpec({ cidr: "192.168.1.0/24" })),
    field: "spec.cidr",
    message: "must not be set together with spec.cidrs",
  },
  {
    name: "IPRule with a deprecated cidr with host bits set",
    object: ipRule("cidr-host-bits", ruleSpec({ cidrs: undefined, cidr: "192.168.1.5/24" })),
    field: "spec.cidr",
    message: "must be canonical, with no host bits set",
  },
  {
    name: "IPRule with a deprecated cidr that is not one",
    object: ipRule("cidr-text", ruleSpec({ cidrs: undefined, cidr: "192.168.1.0" })),
    field: "spec.cidr",
    message: "must be an IPv4 or IPv6 CIDR",
  },
  // IPRule spec.table
  ...[0, -1].map((table) => ({
    name: `IPRule with table ${table}`,
    object: ipRule(`table-${table}`.replace("-1", "minus-1"), ruleSpec({ table })),
    field: "spec.table",
    message: "greater than or equal to 1",
  })),
  ...[253, 254, 255].map((table) => ({
    name: `IPRule with the kernel's table ${table}`,
    object: ipRule(`table-${table}`, ruleSpec({ table })),
    field: "spec.table",
    message: "must not be 253, 254 or 255",
  })),
  {
    name: "IPRule with table 2^32",
    object: ipRule("table-2-32", ruleSpec({ table: 4294967296 })),
    field: "spec.table",
    message: "less than or equal to 4294967295",
  },
  {
    name: "IPRule whose table is a string",
    object: ipRule("table-string", ruleSpec({ table: "100" })),
    field: "spec.table",
    message: "must be of type integer",
  },
  {
    name: "IPRule whose table is a fraction",
    object: ipRule("table-fraction", ruleSpec({ table: 100.5 })),
    field: "spec.table",
    message: "must be of type integer",
  },
  {
    name: "IPRule without table",
    object: ipRule("table-missing", ruleSpec({ table: undefined })),
    field: "spec.table",
    message: "Required value",
  },
  // IPRule spec.priority
  {
    name: "IPRule with priority 0 (the kernel's local rule)",
    object: ipRule("priority-0", ruleSpec({ priority: 0 })),
    field: "spec.priority",
    message: "greater than or equal to 1",
  },
  {
    name: "IPRule with priority 32766 (the kernel's main rule)",
    object: ipRule("priority-32766", ruleSpec({ priority: 32766 })),
    field: "spec.priority",
    message: "less than or equal to 32765",
  },
  {
    name: "IPRule with priority -5",
    object: ipRule("priority-minus-5", ruleSpec({ priority: -5 })),
    field: "spec.priority",
    message: "greater than or equal to 1",
  },
  {
    name: "IPRule whose priority is a string",
    object: ipRule("priority-string", ruleSpec({ priority: "1000" })),
    field: "spec.priority",
    message: "must be of type integer",
  },
  // IPRule other fields
  {
    name: "IPRule with an unknown source",
    object: ipRule("source-unknown", ruleSpec({ source: "NodeIP" })),
    field: "spec.source",
    message: "Unsupported value",
  },
  {
    name: "IPRule with a bad selector operator",
    object: ipRule(
      "selector-operator",
      ruleSpec({ serviceSelector: { matchExpressions: [{ key: "a", operator: "Matches" }] } }),
    ),
    field: "spec.serviceSelector.matchExpressions[0].operator",
    message: "Unsupported value",
  },
  {
    name: "IPRule with an unknown spec field",
    object: ipRule("unknown-spec-field", ruleSpec({ tableName: "uplink" })),
    field: "spec.tableName",
    message: "unknown field",
  },
  {
    name: "IPRule with an unknown top-level field",
    object: { ...ipRule("unknown-top-field", ruleSpec({})), specs: {} },
    field: "specs",
    message: "unknown field",
  },
  {
    name: "IPRule without spec",
    object: { apiVersion: API_VERSION, kind: "IPRule", metadata: { name: "spec-missing" } },
    field: "spec",
    message: "Required value",
  },
  // Agent spec.adoptUnmarkedRules
  {
    name: "Agent whose adoptUnmarkedRules is not a boolean",
    object: agent("agent", { adoptUnmarkedRules: "yes" }),
    field: "spec.adoptUnmarkedRules",
    message: "must be of type boolean",
  },
  // IPRuleConfig
  {
    name: "IPRuleConfig with a bad state",
    object: ipRuleConfig("iprc-10-96-1-51", configSpec({ state: "gone" })),
    field: "spec.state",
    message: "Unsupported value",
  },
  {
    name: "IPRuleConfig without state",
    object: ipRuleConfig("iprc-10-96-1-52", configSpec({ state: undefined })),
    field: "spec.state",
    message: "Required value",
  },
  {
    name: "IPRuleConfig with an invalid serviceIP",
    object: ipRuleConfig("iprc-10-96-1-53", configSpec({ serviceIP: "10.96.1.300" })),
    field: "spec.serviceIP",
    message: "must be an IPv4 or IPv6 address",
  },
  {
    name: "IPRuleConfig whose serviceIP is a CIDR",
    object: ipRuleConfig("iprc-10-96-1-54", configSpec({ serviceIP: "10.96.1.0/24" })),
    field: "spec.serviceIP",
    message: "must be an IPv4 or IPv6 address",
  },
  {
    name: "IPRuleConfig with the kernel's main table",
    object: ipRuleConfig("iprc-10-96-1-55", configSpec({ table: 254 })),
    field: "spec.table",
    message: "must not be 253, 254 or 255",
  },
  {
    name: "IPRuleConfig with priority 0",
    object: ipRuleConfig("iprc-10-96-1-56", configSpec({ priority: 0 })),
    field: "spec.priority",
    message: "greater than or equal to 1",
  },
  {
    name: "IPRuleConfig with an unknown spec field",
    object: ipRuleConfig("iprc-10-96-1-57", configSpec({ node: "worker-1" })),
    field: "spec.node",
    message: "unknown field",
  },
  // Agent
  {
    name: "Agent not named agent",
    object: agent("agent2", {}),
    field: "metadata.name",
    message: "the Agent must be named 'agent'",
  },
  {
    name: "Agent with an unknown log level",
    object: agent("agent", { logLevel: "verbose" }),
    field: "spec.logLevel",
    message: "Unsupported value",
  },
  {
    name: "Agent with a resync period below 1s",
    object: agent("agent", { resyncPeriod: "500ms" }),
    field: "spec.resyncPeriod",
    message: "resyncPeriod must be at least 1s",
  },
  {
    name: "Agent with a resync period of 0s",
    object: agent("agent", { resyncPeriod: "0s" }),
    field: "spec.resyncPeriod",
    message: "resyncPeriod must be at least 1s",
  },
  {
    name: "Agent with a resync period above 24h",
    object: agent("agent", { resyncPeriod: "25h" }),
    field: "spec.resyncPeriod",
    message: "resyncPeriod must be at most 24h",
  },
  {
    name: "Agent with a resync period without unit",
    object: agent("agent", { resyncPeriod: "10" }),
    field: "spec.resyncPeriod",
    message: "should match",
  },
  {
    name: "Agent with a status interval below 1s",
    object: agent("agent", { statusInterval: "500ms" }),
    field: "spec.statusInterval",
    message: "statusInterval must be at least 1s, not 500ms",
  },
  {
    name: "Agent with a status interval above 1h",
    object: agent("agent", { statusInterval: "2h" }),
    field: "spec.statusInterval",
    message: "statusInterval must be at most 1h, not 2h",
  },
  {
    name: "Agent with a status interval without unit",
    object: agent("agent", { statusInterval: "10" }),
    field: "spec.statusInterval",
    message: 'Invalid value: "10"',
  },
  {
    name: "Agent with a bad toleration operator",
    object: agent("agent", { tolerations: [{ key: "a", operator: "Is" }] }),
    field: "spec.tolerations[0].operator",
    message: "Unsupported value",
  },
  {
    name: "Agent with an unknown spec field",
    object: agent("agent", { replicas: 3 }),
    field: "spec.replicas",
    message: "unknown field",
  },
];

/** Creates `object` with strict field validation, as `kubectl create --validate=strict` does. */
function create(cp: ControlPlane, object: Json) {
  return cp.kubectl(["create", "--validate=strict", "-o", "json", "-f", "-"], {
    stdin: JSON.stringify(object),
    check: false,
  });
}

async function createValid(cp: ControlPlane, object: Json): Promise<Json> {
  const result = await create(cp, object);
  assert.ok(result.success, `Expected the object to be accepted: ${result.stderr.trim()}`);
  return JSON.parse(result.stdout) as Json;
}

async function get(cp: ControlPlane, resource: string, name: string, namespace?: string) {
  const args = ["get", resource, name, "-o", "json"];
  if (namespace) args.push("-n", namespace);
  return JSON.parse((await cp.kubectl(args)).stdout) as { spec: Json; metadata: Json };
}

Deno.test("CRD validation on a real kube-apiserver", async (t) => {
  await using cp = await startControlPlane();
  for (const namespace of [REJECT_NAMESPACE, OPERATOR_NAMESPACE]) {
    await cp.kubectl(["create", "namespace", namespace]);
  }

  assert.ok(REJECTED.length >= 25, `Expected at least 25 rejected objects, got ${REJECTED.length}`);
  for (const c of REJECTED) {
    await t.step(`rejects ${c.name}, naming "${c.field}"`, async () => {
      const result = await create(cp, c.object);
      if (result.success) {
        await cp.kubectl(["delete", "-f", "-"], { stdin: JSON.stringify(c.object), check: false });
        assert.fail(`Expected a rejection naming "${c.field}", the object was accepted`);
      }
      const error = result.stderr.trim();
      assert.ok(
        error.includes(`${c.field}:`) || error.includes(`"${c.field}"`),
        `Expected the error to name "${c.field}": ${error}`,
      );
      if (c.message) {
        assert.ok(error.includes(c.message), `Expected "${c.message}" in: ${error}`);
      }
    });
  }

  await t.step("rejects an IPRuleNodeState status with protocol 256, naming it", async () => {
    await createValid(cp, {
      apiVersion: API_VERSION,
      kind: "IPRuleNodeState",
      metadata: { name: "node-status-check" },
      spec: { nodeName: "node-status-check" },
    });
    const result = await cp.kubectl([
      "patch",
      "iprulenodestates",
      "node-status-check",
      "--subresource=status",
      "--type=merge",
      "-p",
      JSON.stringify({ status: { desiredRules: 1, protocol: 256 } }),
    ], { check: false });
    assert.ok(!result.success, "Expected the status patch to be rejected");
    assert.ok(result.stderr.includes("status.protocol:"), result.stderr);
  });

  await t.step("accepts an IPv4 IPRule and fills in the defaults", async () => {
    await createValid(cp, ipRule("valid-v4", { cidrs: ["192.168.1.0/24"], table: 100 }));
    const { spec } = await get(cp, "iprules", "valid-v4");
    assert.deepEqual(spec, {
      cidrs: ["192.168.1.0/24"],
      table: 100,
      priority: 1000,
      source: "ClusterIP",
    });
  });

  await t.step("accepts an IPRule with the original's deprecated cidr, as stored", async () => {
    await createValid(cp, ipRule("valid-cidr", { cidr: "fd00:10::/64", table: 100 }));
    const { spec } = await get(cp, "iprules", "valid-cidr");
    assert.deepEqual(spec, {
      cidr: "fd00:10::/64",
      table: 100,
      priority: 1000,
      source: "ClusterIP",
    });
  });

  await t.step("accepts an IPv6 IPRule and keeps its priority", async () => {
    await createValid(
      cp,
      ipRule("valid-v6", { cidrs: ["fd00:10::/64"], table: 200, priority: 500 }),
    );
    const { spec } = await get(cp, "iprules", "valid-v6");
    assert.deepEqual(spec, {
      cidrs: ["fd00:10::/64"],
      table: 200,
      priority: 500,
      source: "ClusterIP",
    });
  });

  await t.step("accepts a dual-stack IPRule with host routes and selectors", async () => {
    const spec = {
      cidrs: ["192.168.1.0/24", "fd00:10::/64", "10.1.2.3/32", "fd00::1/128"],
      table: 4294967295,
      priority: 32765,
      source: "LoadBalancerIP",
      serviceSelector: { matchLabels: { uplink: "isp-a" } },
      namespaceSelector: { matchExpressions: [{ key: "tenant", operator: "Exists" }] },
    };
    await createValid(cp, ipRule("valid-dual", spec));
    assert.deepEqual((await get(cp, "iprules", "valid-dual")).spec, spec);
  });

  await t.step("accepts the boundary values of table, priority and cidrs", async () => {
    for (
      const [name, overrides] of [
        ["table-1", { table: 1, priority: 1 }],
        ["table-252", { table: 252 }],
        ["table-256", { table: 256 }],
        ["cidrs-64", { cidrs: cidrs65.slice(0, 64) }],
      ] as const
    ) {
      await createValid(cp, ipRule(`valid-${name}`, ruleSpec(overrides)));
    }
  });

  await t.step("lists IPRules with the printer columns", async () => {
    const { stdout } = await cp.kubectl(["get", "iprules", "valid-v4"]);
    const header = stdout.split("\n")[0] ?? "";
    for (const column of ["NAME", "CIDRS", "TABLE", "PRIORITY", "MATCHED", "AGE"]) {
      assert.ok(header.includes(column), `Expected column "${column}" in: ${header}`);
    }
    assert.match(stdout, /valid-v4\s+\["192\.168\.1\.0\/24"\]\s+100\s+1000/);
  });

  await t.step("accepts IPv4 and IPv6 IPRuleConfigs in both states", async () => {
    const configs = [
      ipRuleConfig("iprc-10-96-1-50", configSpec({})),
      ipRuleConfig(
        "iprc-fd00-0-0-0-0-0-0-1",
        configSpec({
          serviceIP: "fd00::1",
          state: "absent",
          absentSince: "2025-01-01T00:00:00Z",
          ipRule: "valid-v6",
          service: { namespace: "default", name: "web" },
          services: [{ namespace: "default", name: "web" }],
        }),
      ),
    ];
    for (const config of configs) {
      await createValid(cp, config);
      const name = (config.metadata as { name: string }).name;
      assert.deepEqual((await get(cp, "ipruleconfigs", name)).spec, config.spec);
    }
  });

  await t.step("accepts the Agent named agent and fills in the defaults", async () => {
    await createValid(cp, agent("agent", { nodeSelector: { role: "edge" } }, OPERATOR_NAMESPACE));
    const { spec } = await get(cp, "agents", "agent", OPERATOR_NAMESPACE);
    assert.deepEqual(spec, {
      nodeSelector: { role: "edge" },
      resyncPeriod: "10s",
      statusInterval: "10s",
      logLevel: "info",
    });
  });

  // The DaemonSet passes both on as flags: the agent must take what the CRD takes.
  const durations = [
    ["resyncPeriod", "resync", MIN_RESYNC_MS, ["1s", "1m30s", "1h", "1500ms", "24h"]],
    ["statusInterval", "status-interval", MIN_STATUS_INTERVAL_MS, ["1s", "1m30s", "1500ms", "1h"]],
  ] as const;
  for (const [field, flag, minMs, values] of durations) {
    await t.step(
      `accepts compound and boundary ${field} values the agent's --${flag} accepts`,
      async () => {
        for (const value of values) {
          const result = await cp.kubectl(
            ["create", "--dry-run=server", "--validate=strict", "-o", "json", "-f", "-"],
            {
              stdin: JSON.stringify(agent("agent", { [field]: value })),
              check: false,
            },
          );
          assert.ok(result.success, `${value}: ${result.stderr.trim()}`);
          durationFlag(flag, value, minMs);
        }
      },
    );
  }
});
