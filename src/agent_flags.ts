/** The agent's flags: table, defaults and typed options (pure; the entry point wires). */
import {
  addressFlag,
  choiceFlag,
  durationFlag,
  type FlagDef,
  type FlagValues,
  integerFlag,
  parseFlags,
  UsageError,
} from "./cli.ts";
import type { FlagContext, LogFormat, LogLevel } from "./controller_flags.ts";

/**
 * Netlink rule protocol (FRA_PROTOCOL) marking the rules the agent owns. 201 is unassigned in
 * iproute2's rt_protos; `ip -d rule show` prints it as "proto 201".
 */
export const DEFAULT_PROTOCOL = 201;
/** Where Debian installs libmnl. */
export const DEFAULT_LIBMNL_PATH = "/usr/lib/x86_64-linux-gnu/libmnl.so.0";

/** Every flag of the agent. */
export const AGENT_FLAGS: readonly FlagDef[] = [
  {
    name: "kubeconfig",
    type: "string",
    value: "PATH",
    help: "Kubeconfig to use (default: in-cluster, then $KUBECONFIG, then ~/.kube/config)",
  },
  {
    name: "node-name",
    type: "string",
    value: "NAME",
    default: "$NODE_NAME, else the host name",
    help: "Node whose IPRuleNodeState this agent writes",
  },
  {
    name: "resync",
    type: "string",
    value: "DURATION",
    default: "10s",
    help: "Period of the full resync (kernel dump and diff)",
  },
  {
    name: "protocol",
    type: "string",
    value: "N",
    default: String(DEFAULT_PROTOCOL),
    help: "Netlink rule protocol marking the rules this agent owns (1-255); it deletes only those",
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
  {
    name: "metrics-addr",
    type: "string",
    value: "HOST:PORT",
    default: ":9472",
    help: "Listen address of /metrics, /healthz and /readyz (host network: pick a free port)",
  },
  {
    name: "log-format",
    type: "string",
    value: "json|text",
    default: "json, text on a terminal",
    help: "Log line format",
  },
  {
    name: "log-level",
    type: "string",
    value: "LEVEL",
    default: "info",
    help: "debug, info, warn or error",
  },
  { name: "version", type: "boolean", help: "Print the version and exit" },
];

/** The agent's typed options. */
export interface AgentOptions {
  help: boolean;
  version: boolean;
  kubeconfig?: string;
  nodeName: string;
  resyncMs: number;
  protocol: number;
  once: boolean;
  dryRun: boolean;
  libmnlPath: string;
  metricsAddr: { hostname: string; port: number };
  logFormat: LogFormat;
  logLevel: LogLevel;
}

function str(values: FlagValues, name: string): string | undefined {
  const v = values[name];
  return typeof v === "string" ? v : undefined;
}

/** Parses the agent's argv into typed options; mistakes throw a UsageError. */
export function parseAgentFlags(
  args: readonly string[],
  ctx: FlagContext & { hostname: string },
): AgentOptions {
  const v = parseFlags(args, AGENT_FLAGS);
  const nodeName = str(v, "node-name") ?? ctx.env.NODE_NAME ?? ctx.hostname;
  if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(nodeName)) {
    throw new UsageError(
      `Invalid value for --node-name: "${nodeName}" (expected a DNS-1123 node name)`,
    );
  }
  const options: AgentOptions = {
    help: v.help === true,
    version: v.version === true,
    nodeName,
    resyncMs: durationFlag("resync", str(v, "resync") ?? "10s"),
    protocol: integerFlag("protocol", str(v, "protocol") ?? String(DEFAULT_PROTOCOL), 1, 255),
    once: v.once === true,
    dryRun: v["dry-run"] === true,
    libmnlPath: str(v, "libmnl") ?? ctx.env.IPRULE_LIBMNL_PATH ?? DEFAULT_LIBMNL_PATH,
    metricsAddr: addressFlag("metrics-addr", str(v, "metrics-addr") ?? ":9472"),
    logFormat: choiceFlag(
      "log-format",
      str(v, "log-format") ?? (ctx.isTerminal ? "text" : "json"),
      [
        "json",
        "text",
      ],
    ),
    logLevel: choiceFlag(
      "log-level",
      str(v, "log-level") ?? "info",
      [
        "debug",
        "info",
        "warn",
        "error",
      ] as const,
    ),
  };
  const kubeconfig = str(v, "kubeconfig");
  if (kubeconfig !== undefined) options.kubeconfig = kubeconfig;
  return options;
}
