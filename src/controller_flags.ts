/** The controller's flags: table, defaults and typed options (pure; the entry point wires). */
import {
  addressFlag,
  choiceFlag,
  durationFlag,
  type FlagDef,
  type FlagValues,
  parseFlags,
} from "./cli.ts";
import { VERSION } from "./version.ts";

/** Namespace the operator runs in when neither --namespace nor POD_NAMESPACE says. */
export const DEFAULT_NAMESPACE = "ip-rule-operator-system";
/** Agent image used when the Agent CR names none. */
export const DEFAULT_AGENT_IMAGE = `ghcr.io/ip-rule-operator/iprule-agent:v${VERSION}`;

/** Every flag of the controller. */
export const CONTROLLER_FLAGS: readonly FlagDef[] = [
  {
    name: "kubeconfig",
    type: "string",
    value: "PATH",
    help: "Kubeconfig to use (default: in-cluster, then $KUBECONFIG, then ~/.kube/config)",
  },
  {
    name: "namespace",
    type: "string",
    value: "NS",
    default: `$POD_NAMESPACE or ${DEFAULT_NAMESPACE}`,
    help: "Namespace of the Agent CR, its DaemonSet and the leader Lease",
  },
  {
    name: "agent-image",
    type: "string",
    value: "IMAGE",
    default: DEFAULT_AGENT_IMAGE,
    help: "Agent image when the Agent CR sets no spec.image",
  },
  {
    name: "grace-period",
    type: "string",
    value: "DURATION",
    default: "5m",
    help: "How long an absent IPRuleConfig is kept before it is deleted",
  },
  {
    name: "leader-elect",
    type: "boolean",
    help: "Elect a leader through a coordination.k8s.io Lease so only one replica writes",
  },
  {
    name: "lease-duration",
    type: "string",
    value: "DURATION",
    default: "15s",
    help: "Leader lease duration; a standby takes over this long after the leader stops renewing",
  },
  {
    name: "metrics-addr",
    type: "string",
    value: "HOST:PORT",
    default: ":8080",
    help: "Listen address of /metrics, /healthz and /readyz",
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

/** Log line formats. */
export type LogFormat = "json" | "text";
/** Log levels. */
export type LogLevel = "debug" | "info" | "warn" | "error";
const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;

/** The controller's typed options. */
export interface ControllerOptions {
  help: boolean;
  version: boolean;
  kubeconfig?: string;
  namespace: string;
  agentImage: string;
  gracePeriodMs: number;
  leaderElect: boolean;
  leaseDurationMs: number;
  metricsAddr: { hostname: string; port: number };
  logFormat: LogFormat;
  logLevel: LogLevel;
}

/** What the flags default from: environment and terminal. */
export interface FlagContext {
  env: Readonly<Record<string, string | undefined>>;
  isTerminal: boolean;
}

function str(values: FlagValues, name: string): string | undefined {
  const v = values[name];
  return typeof v === "string" ? v : undefined;
}

/** Parses the controller's argv into typed options; mistakes throw a UsageError. */
export function parseControllerFlags(args: readonly string[], ctx: FlagContext): ControllerOptions {
  const v = parseFlags(args, CONTROLLER_FLAGS);
  const options: ControllerOptions = {
    help: v.help === true,
    version: v.version === true,
    namespace: str(v, "namespace") ?? ctx.env.POD_NAMESPACE ?? DEFAULT_NAMESPACE,
    agentImage: str(v, "agent-image") ?? DEFAULT_AGENT_IMAGE,
    gracePeriodMs: durationFlag("grace-period", str(v, "grace-period") ?? "5m"),
    leaderElect: v["leader-elect"] === true,
    leaseDurationMs: durationFlag("lease-duration", str(v, "lease-duration") ?? "15s"),
    metricsAddr: addressFlag("metrics-addr", str(v, "metrics-addr") ?? ":8080"),
    logFormat: choiceFlag(
      "log-format",
      str(v, "log-format") ?? (ctx.isTerminal ? "text" : "json"),
      [
        "json",
        "text",
      ],
    ),
    logLevel: choiceFlag("log-level", str(v, "log-level") ?? "info", LOG_LEVELS),
  };
  const kubeconfig = str(v, "kubeconfig");
  if (kubeconfig !== undefined) options.kubeconfig = kubeconfig;
  return options;
}
