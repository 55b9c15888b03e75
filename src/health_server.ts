/** The HTTP endpoint of both executables: `/metrics` (Prometheus), `/healthz`, `/readyz`. */
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
  registry: Registry;
  readiness: () => Readiness;
  signal: AbortSignal;
}

/**
 * Starts the endpoint; it stops when the signal aborts. Returns the bound port. On "::" (every
 * address) a host without IPv6 gets 0.0.0.0 instead.
 */
export function startHealthServer(
  options: HealthServerOptions,
): { port: number; finished: Promise<void> } {
  const serve = (hostname: string) =>
    Deno.serve({
      hostname,
      port: options.port,
      signal: options.signal,
      onListen: () => {},
    }, (request) => handle(options, request));
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = serve(options.hostname);
  } catch (error: unknown) {
    if (options.hostname !== "::" || error instanceof Deno.errors.AddrInUse) throw error;
    server = serve("0.0.0.0");
  }
  return { port: server.addr.port, finished: server.finished };
}

async function handle(options: HealthServerOptions, request: Request): Promise<Response> {
  const path = new URL(request.url).pathname;
  if (path === "/metrics") {
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
