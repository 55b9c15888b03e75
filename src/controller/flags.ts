/** The controller's flags: table, defaults and typed options (pure; the entry point wires). */
import {
  COMMON_FLAGS,
  type CommonOptions,
  commonOptions,
  durationFlag,
  type FlagContext,
  type FlagDef,
  KUBECONFIG_FLAG,
  parseFlags,
  stringFlag as str,
} from "../cli.ts";
import {
  type EndpointDefaults,
  endpointFlags,
  type EndpointOptions,
  endpointOptions,
} from "../metrics/flags.ts";
import { VERSION } from "../version.ts";

/** Namespace the operator runs in when neither --namespace nor POD_NAMESPACE says. */
export const DEFAULT_NAMESPACE = "ip-rule-operator-system";
/** Agent image used when the Agent CR names none. */
export const DEFAULT_AGENT_IMAGE = `ghcr.io/ip-rule-operator/iprule-agent:v${VERSION}`;

/** Ports of the controller's /metrics (HTTPS) and health endpoints, as kubebuilder's. */
export const CONTROLLER_ENDPOINTS: EndpointDefaults = { metricsPort: 8443, healthPort: 8081 };

/** Every flag of the controller. */
export const CONTROLLER_FLAGS: readonly FlagDef[] = [
  KUBECONFIG_FLAG,
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
    name: "resync-period",
    type: "string",
    value: "DURATION",
    default: "5m",
    help: "Period of the full resync that checks every IPRuleConfig and IPRule status (the " +
      "safety net under the per-change reconciles; it writes nothing when they were right)",
  },
  {
    name: "agent-status-interval",
    type: "string",
    value: "DURATION",
    default: "10s",
    help: "Least time between two Agent status writes; its Ready condition flipping is " +
      "written after at most 1s",
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
  ...endpointFlags(CONTROLLER_ENDPOINTS),
  ...COMMON_FLAGS,
];

/** The controller's typed options. */
export interface ControllerOptions extends CommonOptions, EndpointOptions {
  namespace: string;
  agentImage: string;
  gracePeriodMs: number;
  /** Period of the config reconciler's full resync, ms. */
  resyncPeriodMs: number;
  /** Least time between two Agent status writes, ms. */
  agentStatusIntervalMs: number;
  leaderElect: boolean;
  leaseDurationMs: number;
}

/** Parses the controller's argv into typed options; mistakes throw a UsageError. */
export function parseControllerFlags(args: readonly string[], ctx: FlagContext): ControllerOptions {
  const v = parseFlags(args, CONTROLLER_FLAGS);
  return {
    ...commonOptions(v, ctx),
    namespace: str(v, "namespace") ?? ctx.env.POD_NAMESPACE ?? DEFAULT_NAMESPACE,
    agentImage: str(v, "agent-image") ?? DEFAULT_AGENT_IMAGE,
    gracePeriodMs: durationFlag("grace-period", str(v, "grace-period") ?? "5m"),
    resyncPeriodMs: durationFlag("resync-period", str(v, "resync-period") ?? "5m"),
    agentStatusIntervalMs: durationFlag(
      "agent-status-interval",
      str(v, "agent-status-interval") ?? "10s",
    ),
    leaderElect: v["leader-elect"] === true,
    leaseDurationMs: durationFlag("lease-duration", str(v, "lease-duration") ?? "15s"),
    ...endpointOptions(v, CONTROLLER_ENDPOINTS),
  };
}
