/**
 * The endpoint flags both executables share: where /metrics and the health endpoints listen,
 * and how /metrics is protected (pure; the entry points wire).
 */
import { addressFlag, type FlagDef, type FlagValues, stringFlag, UsageError } from "../cli.ts";

/** A listen address. */
export interface ListenAddress {
  hostname: string;
  port: number;
}

/** Where the endpoints listen and how /metrics is served. */
export interface EndpointOptions {
  /** /metrics: HTTPS with authentication and authorization unless `metricsSecure` is false. */
  metricsAddr: ListenAddress;
  /** /healthz and /readyz, plain HTTP for the kubelet's probes. */
  healthAddr: ListenAddress;
  /** False with --metrics-insecure: plain HTTP, no authentication. */
  metricsSecure: boolean;
  /** Directory holding tls.crt and tls.key; a self-signed certificate when unset. */
  metricsCertDir?: string;
}

/** Default ports of an executable's endpoints. */
export interface EndpointDefaults {
  metricsPort: number;
  healthPort: number;
  /** A note for --metrics-addr's help, e.g. about the host network. */
  note?: string;
}

/** The endpoint flags, with the executable's default ports in their help. */
export function endpointFlags(defaults: EndpointDefaults): FlagDef[] {
  const note = defaults.note ? ` (${defaults.note})` : "";
  return [
    {
      name: "metrics-addr",
      type: "string",
      value: "HOST:PORT",
      default: `:${defaults.metricsPort}`,
      help: "Listen address of /metrics: HTTPS, each request authenticated (TokenReview) and " +
        `authorized for get on the non-resource URL /metrics (SubjectAccessReview)${note}`,
    },
    {
      name: "health-addr",
      type: "string",
      value: "HOST:PORT",
      default: `:${defaults.healthPort}`,
      help: "Listen address of /healthz and /readyz, plain HTTP for the kubelet's probes",
    },
    {
      name: "metrics-insecure",
      type: "boolean",
      help: "Serve /metrics over plain HTTP without authentication, for a proxy or mesh that " +
        "protects it instead",
    },
    {
      name: "metrics-cert-dir",
      type: "string",
      value: "DIR",
      default: "a self-signed certificate made at start",
      help: "Directory with tls.crt and tls.key (e.g. a mounted kubernetes.io/tls Secret) " +
        "for /metrics",
    },
  ];
}

/** Reads the endpoint flags; mistakes throw a UsageError. */
export function endpointOptions(values: FlagValues, defaults: EndpointDefaults): EndpointOptions {
  const options: EndpointOptions = {
    metricsAddr: addressFlag(
      "metrics-addr",
      stringFlag(values, "metrics-addr") ?? `:${defaults.metricsPort}`,
    ),
    healthAddr: addressFlag(
      "health-addr",
      stringFlag(values, "health-addr") ?? `:${defaults.healthPort}`,
    ),
    metricsSecure: values["metrics-insecure"] !== true,
  };
  const certDir = stringFlag(values, "metrics-cert-dir");
  if (certDir !== undefined) {
    if (!options.metricsSecure) {
      throw new UsageError(
        `Invalid value for --metrics-cert-dir: "${certDir}" (--metrics-insecure serves no TLS)`,
      );
    }
    options.metricsCertDir = certDir;
  }
  return options;
}
