/**
 * Starts both endpoints of an executable: `/healthz` and `/readyz` in plain HTTP on the health
 * address (the kubelet probes them without credentials), and `/metrics` on the metrics address,
 * over HTTPS with every request authenticated and authorized (see auth.ts) unless
 * --metrics-insecure.
 *
 * @module
 */
import type { Registry } from "prom-client";
import { type EarlyHealth, type Readiness, serveOn, startHealthServer } from "../health_server.ts";
import { MetricsAuth, type ReviewClient } from "./auth.ts";
import { metricsCertificate } from "./certificate.ts";
import type { EndpointOptions } from "./flags.ts";

/** What the endpoints serve and check with. */
export interface EndpointsInput {
  registry: Registry;
  readiness: () => Readiness;
  /** Sends the TokenReviews and SubjectAccessReviews (the process's KubeClient). */
  client: ReviewClient;
  /** DNS names and addresses of a self-signed certificate (the listen address is added). */
  certNames: readonly string[];
  /** Told about requests refused because a review failed (HTTP 500). */
  onReviewError?: (reason: string) => void;
  /**
   * The health endpoint the entry point started already (src/health_server.ts): it gets
   * `readiness`, and stays the entry point's to close; without it one is started here.
   */
  health?: EarlyHealth;
  signal: AbortSignal;
}

/** The started endpoints. */
export interface Endpoints {
  healthPort: number;
  metricsPort: number;
  /** "http", or "https" with the certificate's source ("self-signed" or the directory). */
  metricsScheme: "http" | "https";
  metricsCertificate?: string;
  /** With an early health endpoint: when it began to listen, ms since the process started. */
  healthListeningMs?: number;
  /** Resolves when both servers have stopped (only /metrics with an early health endpoint). */
  finished: Promise<void>;
}

/** The /metrics handler: the registry's text for allowed GET and HEAD requests. */
export function metricsHandler(
  registry: Registry,
  auth?: MetricsAuth,
  onReviewError?: (reason: string) => void,
): (request: Request) => Promise<Response> {
  return async (request) => {
    const path = new URL(request.url).pathname;
    if (path !== "/metrics") return new Response("not found\n", { status: 404 });
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("method not allowed\n", { status: 405, headers: { Allow: "GET, HEAD" } });
    }
    if (auth !== undefined) {
      const decision = await auth.check(request, path);
      if (!decision.allowed) {
        if (decision.status === 500) onReviewError?.(decision.reason);
        return new Response(`${decision.reason}\n`, {
          status: decision.status,
          headers: decision.status === 401 ? { "WWW-Authenticate": 'Bearer realm="metrics"' } : {},
        });
      }
    }
    return new Response(request.method === "HEAD" ? null : await registry.metrics(), {
      headers: { "Content-Type": registry.contentType },
    });
  };
}

/** Starts the health and metrics endpoints; both stop when the signal aborts. */
export async function startEndpoints(
  options: EndpointOptions,
  input: EndpointsInput,
): Promise<Endpoints> {
  // Stops the health endpoint again when /metrics cannot start.
  const stop = new AbortController();
  const signal = AbortSignal.any([input.signal, stop.signal]);
  let health: { port: number; finished: Promise<void>; listeningMs?: number };
  if (input.health === undefined) {
    health = startHealthServer({ ...options.healthAddr, readiness: input.readiness, signal });
  } else {
    input.health.readiness = input.readiness;
    health = {
      port: input.health.port,
      finished: Promise.resolve(),
      listeningMs: input.health.listeningMs,
    };
  }
  const early = health.listeningMs === undefined ? {} : { healthListeningMs: health.listeningMs };
  try {
    if (!options.metricsSecure) {
      const metrics = serveOn({ ...options.metricsAddr, signal }, metricsHandler(input.registry));
      return {
        healthPort: health.port,
        ...early,
        metricsPort: metrics.port,
        metricsScheme: "http",
        finished: Promise.all([health.finished, metrics.finished]).then(() => {}),
      };
    }
    const pair = await metricsCertificate(options.metricsCertDir, [
      ...input.certNames,
      options.metricsAddr.hostname,
    ]);
    const auth = new MetricsAuth(input.client);
    const metrics = serveOn(
      { ...options.metricsAddr, signal },
      metricsHandler(input.registry, auth, input.onReviewError),
      pair,
    );
    return {
      healthPort: health.port,
      ...early,
      metricsPort: metrics.port,
      metricsScheme: "https",
      metricsCertificate: pair.source,
      finished: Promise.all([health.finished, metrics.finished]).then(() => {}),
    };
  } catch (error: unknown) {
    stop.abort();
    await health.finished;
    throw error;
  }
}

/** The log fields of started endpoints. */
export function endpointsLog(endpoints: Endpoints): Record<string, string | number> {
  return {
    healthPort: endpoints.healthPort,
    ...(endpoints.healthListeningMs === undefined
      ? {}
      : { healthListeningMs: endpoints.healthListeningMs }),
    metricsPort: endpoints.metricsPort,
    metricsScheme: endpoints.metricsScheme,
    ...(endpoints.metricsCertificate ? { metricsCertificate: endpoints.metricsCertificate } : {}),
  };
}
