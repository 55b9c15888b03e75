/** The agent's flags: table, defaults and typed options (pure; the entry point wires). */
import {
  COMMON_FLAGS,
  type CommonOptions,
  commonOptions,
  durationFlag,
  type FlagContext,
  type FlagDef,
  integerFlag,
  KUBECONFIG_FLAG,
  parseFlags,
  stringFlag as str,
  UsageError,
} from "../cli.ts";
import { MAX_PROTOCOL, RESERVED_PROTOCOLS } from "../api/limits.ts";
import {
  type EndpointDefaults,
  endpointFlags,
  type EndpointOptions,
  endpointOptions,
} from "../metrics/flags.ts";

/**
 * Netlink rule protocol (FRA_PROTOCOL) marking the rules the agent owns. 201 is unassigned in
 * iproute2's rt_protos; `ip -d rule show` prints it as "proto 201".
 */
export const DEFAULT_PROTOCOL = 201;

/**
 * The --protocol value, refused when out of range or another owner's number. With adoption the
 * stake is higher: the unmarked rules it takes over would be marked as that owner's.
 */
function protocolFlag(text: string, adopting: boolean): number {
  const protocol = integerFlag("protocol", text, 1, MAX_PROTOCOL);
  const owner = RESERVED_PROTOCOLS.get(protocol);
  if (owner !== undefined) {
    const adoption = adopting
      ? ", and with --adopt-unmarked-rules the rules it takes over would carry it too"
      : "";
    throw new UsageError(
      `Invalid value for --protocol: "${text}" (${protocol} is the "${owner}" protocol of ` +
        `iproute2's rt_protos; the agent deletes every rule carrying its protocol${adoption}, ` +
        `so pick an unassigned number such as ${DEFAULT_PROTOCOL})`,
    );
  }
  return protocol;
}
/**
 * Shortest --resync (the e2e tests use 50ms): each resync dumps every rule (~2-6 ms CPU with
 * 10k) while kernel events already repair drift at once, so a shorter period only burns CPU.
 * In a cluster the Agent CRD asks for at least 1s.
 */
export const MIN_RESYNC_MS = 50;

/**
 * Shortest --status-interval. The Agent CRD asks for at least 1s; tests go lower so that they
 * see coalesced writes without waiting seconds for each.
 */
export const MIN_STATUS_INTERVAL_MS = 100;

/** Where Debian installs libmnl. */
export const DEFAULT_LIBMNL_PATH = "/usr/lib/x86_64-linux-gnu/libmnl.so.0";

/**
 * Ports of the agent's /metrics (HTTPS) and health endpoints. In the host network: the
 * DaemonSet binds both to the node's own address (status.hostIP), not every address.
 */
export const AGENT_ENDPOINTS: EndpointDefaults = {
  metricsPort: 9472,
  healthPort: 9473,
  note: "host network: pick a free port",
};

/** Every flag of the agent. */
export const AGENT_FLAGS: readonly FlagDef[] = [
  KUBECONFIG_FLAG,
  {
    name: "node-name",
    type: "string",
    value: "NAME",
    default: "$NODE_NAME, else the host name",
    help: "Node whose IPRuleNodeState this agent writes",
  },
  {
    name: "namespace",
    type: "string",
    value: "NAME",
    default: "$POD_NAMESPACE, else none",
    help: "Namespace of the Agent that deployed this agent (the DaemonSet sets it): the agent " +
      "watches it and its Agent, and removes its rules when it stops while either is being " +
      "deleted (an uninstall). Without it, only a node's drain mark does",
  },
  {
    name: "resync",
    type: "string",
    value: "DURATION",
    default: "10s",
    help: "Period of the full resync (kernel dump and diff)",
  },
  {
    name: "status-interval",
    type: "string",
    value: "DURATION",
    default: "10s",
    help: "Least time between two IPRuleNodeState status writes (jittered ±10%; the last state " +
      "is always written). Convergence lost, failed rules and a finished drain are written " +
      "after at most 1s",
  },
  {
    name: "protocol",
    type: "string",
    value: "N",
    default: String(DEFAULT_PROTOCOL),
    help: "Netlink rule protocol marking the rules this agent owns (1-255, not one of " +
      "rt_protos' well-known numbers); it deletes only those",
  },
  {
    name: "adopt-unmarked-rules",
    type: "boolean",
    help: "Migration from the original operator: replace unmarked rules (no protocol) identical " +
      "to desired ones with marked copies, and delete unmarked rules from an IPRuleConfig's " +
      "source whose table or priority no desired rule has (Agent spec.adoptUnmarkedRules)",
  },
  { name: "once", type: "boolean", help: "Converge once and exit: 0 when converged, 1 otherwise" },
  {
    name: "dry-run",
    type: "boolean",
    help: "Print the plan (rules to add and delete, in ip rule syntax) and change nothing",
  },
  {
    name: "libmnl",
    type: "string",
    value: "PATH",
    default: `$IPRULE_LIBMNL_PATH or ${DEFAULT_LIBMNL_PATH}`,
    help: "Path of libmnl.so.0",
  },
  ...endpointFlags(AGENT_ENDPOINTS),
  ...COMMON_FLAGS,
];

/** The agent's typed options. */
export interface AgentOptions extends CommonOptions, EndpointOptions {
  nodeName: string;
  /** The Agent's namespace (see the flag); undefined outside a cluster. */
  namespace: string | undefined;
  resyncMs: number;
  /** Least time between two status writes, ms. */
  statusIntervalMs: number;
  protocol: number;
  once: boolean;
  dryRun: boolean;
  /** Take over the original operator's unmarked rules (--adopt-unmarked-rules). */
  adoptUnmarkedRules: boolean;
  libmnlPath: string;
}

/** Parses the agent's argv into typed options; mistakes throw a UsageError. */
export function parseAgentFlags(
  args: readonly string[],
  ctx: FlagContext & { hostname: string },
): AgentOptions {
  const v = parseFlags(args, AGENT_FLAGS);
  const adopt = v["adopt-unmarked-rules"] === true;
  const nodeName = str(v, "node-name") ?? ctx.env.NODE_NAME ?? ctx.hostname;
  if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(nodeName)) {
    throw new UsageError(
      `Invalid value for --node-name: "${nodeName}" (expected a DNS-1123 node name)`,
    );
  }
  const namespace = str(v, "namespace") ?? (ctx.env.POD_NAMESPACE || undefined);
  if (namespace !== undefined && !/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(namespace)) {
    throw new UsageError(
      `Invalid value for --namespace: "${namespace}" (expected a DNS-1123 label)`,
    );
  }
  return {
    ...commonOptions(v, ctx),
    nodeName,
    namespace,
    resyncMs: durationFlag("resync", str(v, "resync") ?? "10s", MIN_RESYNC_MS),
    statusIntervalMs: durationFlag(
      "status-interval",
      str(v, "status-interval") ?? "10s",
      MIN_STATUS_INTERVAL_MS,
    ),
    protocol: protocolFlag(str(v, "protocol") ?? String(DEFAULT_PROTOCOL), adopt),
    once: v.once === true,
    dryRun: v["dry-run"] === true,
    adoptUnmarkedRules: adopt,
    libmnlPath: str(v, "libmnl") ?? ctx.env.IPRULE_LIBMNL_PATH ?? DEFAULT_LIBMNL_PATH,
    ...endpointOptions(v, AGENT_ENDPOINTS),
  };
}
