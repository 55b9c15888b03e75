/**
 * The HTTP endpoints of both executables: `/healthz` and `/readyz` (plain, for the kubelet),
 * and `/metrics` when given a registry (src/metrics/ serves the protected one).
 */
import type { Registry } from "prom-client";

/** Whether the process is ready, and why not. */
export interface Readiness {
  ready: boolean;
  reason: string;
}

/** What the endpoint serves. */
export interface HealthServerOptions {
  hostname: string;
  port: number;
  /** Serves /metrics from it, unprotected, when given. */
  registry?: Registry;
  readiness: () => Readiness;
  signal: AbortSignal;
}

/** A started server: its bound port and when it has stopped. */
export interface StartedServer {
  port: number;
  finished: Promise<void>;
}

/**
 * Serves `handler` on hostname:port (with TLS when `tls` is given) until the signal aborts. On
 * "::" (every address) a host without IPv6 gets 0.0.0.0 instead.
 */
export function serveOn(
  listen: { hostname: string; port: number; signal: AbortSignal },
  handler: (request: Request) => Response | Promise<Response>,
  tls?: { cert: string; key: string },
): StartedServer {
  const serve = (hostname: string) =>
    Deno.serve({
      hostname,
      port: listen.port,
      signal: listen.signal,
      onListen: () => {},
      ...(tls ?? {}),
    }, handler);
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = serve(listen.hostname);
  } catch (error: unknown) {
    if (listen.hostname !== "::" || error instanceof Deno.errors.AddrInUse) throw error;
    server = serve("0.0.0.0");
  }
  return { port: server.addr.port, finished: server.finished };
}

/** Starts the endpoint; it stops when the signal aborts. Returns the bound port. */
export function startHealthServer(options: HealthServerOptions): StartedServer {
  return serveOn(options, (request) => handle(options, request));
}

async function handle(options: HealthServerOptions, request: Request): Promise<Response> {
  const path = new URL(request.url).pathname;
  if (path === "/metrics" && options.registry) {
    return new Response(await options.registry.metrics(), {
      headers: { "Content-Type": options.registry.contentType },
    });
  }
  if (path === "/healthz") return new Response("ok\n");
  if (path === "/readyz") {
    const { ready, reason } = options.readiness();
    return new Response(`${ready ? "ok" : "not ready"}: ${reason}\n`, {
      status: ready ? 200 : 503,
    });
  }
  return new Response("not found\n", { status: 404 });
}
