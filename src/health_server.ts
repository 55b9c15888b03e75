/**
 * The HTTP endpoints of both executables: `/healthz` and `/readyz` (plain, for the kubelet),
 * and `/metrics` when given a registry (src/metrics/ serves the protected one).
 *
 * A normal start must give the kubelet no failed probe (each one is a Warning event): the entry
 * points start this endpoint before they load the rest (`startEarlyHealth`), the Pods' startup
 * probe asks `/healthz` from the first second on, and their readiness probe asks
 * `/readyz?wait=<seconds>`, which holds its answer until the process is ready or the wait is
 * over, so a start that takes a few seconds answers "ready" once instead of "not ready" first.
 */
import type { Registry } from "prom-client";

/** Whether the process is ready, and why not. */
export interface Readiness {
  ready: boolean;
  reason: string;
}

/** Readiness of a process whose parts do not exist yet. */
export const STARTING: Readiness = { ready: false, reason: "starting" };
/** Longest `/readyz?wait=` honoured, seconds (the kubelet's probe timeout must be longer). */
export const MAX_READY_WAIT_S = 30;
/** How often a waiting `/readyz` looks at the readiness again, ms. */
export const READY_RECHECK_MS = 100;

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
    const wait = readyWait(new URL(request.url).searchParams.get("wait"));
    if (wait === undefined) {
      return new Response(
        `invalid wait: expected seconds from 0 to ${MAX_READY_WAIT_S}\n`,
        { status: 400 },
      );
    }
    const { ready, reason } = await readiness(options, wait * 1000);
    return new Response(`${ready ? "ok" : "not ready"}: ${reason}\n`, {
      status: ready ? 200 : 503,
    });
  }
  return new Response("not found\n", { status: 404 });
}

/** The `wait` parameter in seconds (0 when absent); undefined when it is not one. */
function readyWait(text: string | null): number | undefined {
  if (text === null) return 0;
  const seconds = Number(text);
  return text !== "" && Number.isFinite(seconds) && seconds >= 0 && seconds <= MAX_READY_WAIT_S
    ? seconds
    : undefined;
}

/**
 * The readiness, looked at again every {@link READY_RECHECK_MS} until it is ready, `waitMs` is
 * over or the server stops. A re-check rather than a change notification: readiness is a
 * function of several parts (caches, reconciles, leadership), and this runs only while a probe
 * waits on a process that is not ready.
 */
async function readiness(options: HealthServerOptions, waitMs: number): Promise<Readiness> {
  const deadline = performance.now() + waitMs;
  let state = options.readiness();
  while (!state.ready && !options.signal.aborted) {
    const left = deadline - performance.now();
    if (left <= 0) break;
    await pause(Math.min(READY_RECHECK_MS, left), options.signal);
    state = options.readiness();
  }
  return state;
}

/** Resolves after `ms`, or at once when the signal aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * The health endpoint of a process still loading the rest of itself: it listens at once and
 * answers "starting" until `readiness` is set to the real check.
 */
export interface EarlyHealth extends StartedServer {
  /** When it began to listen, ms since the process started (how much of the start it covers). */
  listeningMs: number;
  /** The readiness `/readyz` reports; {@link STARTING} until set. */
  readiness: () => Readiness;
  /** Stops the endpoint and waits until it has. */
  close(): Promise<void>;
}

/**
 * Starts the health endpoint before the rest of the process loads (loading the API client takes
 * ~0.5 s, more on a busy node, and the kubelet probes from the first second). It serves until
 * `close`, which the entry point calls when everything else has stopped: a probe during the
 * shutdown (the kubelet probes readiness until the container exits) gets an answer, not a
 * refused connection. Throws as `startHealthServer` does (e.g. the address is in use).
 */
export function startEarlyHealth(listen: { hostname: string; port: number }): EarlyHealth {
  const stop = new AbortController();
  let current: () => Readiness = () => STARTING;
  const server = startHealthServer({
    ...listen,
    readiness: () => current(),
    signal: stop.signal,
  });
  return {
    port: server.port,
    finished: server.finished,
    listeningMs: Math.round(performance.now()),
    get readiness() {
      return current;
    },
    set readiness(check: () => Readiness) {
      current = check;
    },
    close: async () => {
      stop.abort();
      await server.finished;
    },
  };
}

/**
 * Runs `main` with an early health endpoint on `listen` (none when `listen` is undefined, e.g. a
 * one-shot run), closed once `main` has returned; exit code 1, logged, when it cannot listen.
 */
export async function withEarlyHealth(
  listen: { hostname: string; port: number } | undefined,
  log: { error: (msg: string, fields?: Record<string, unknown>) => void },
  main: (health: EarlyHealth | undefined) => Promise<number>,
): Promise<number> {
  let health: EarlyHealth | undefined;
  if (listen !== undefined) {
    try {
      health = startEarlyHealth(listen);
    } catch (error: unknown) {
      log.error("Endpoints not started", { err: error, healthAddr: listen });
      return 1;
    }
  }
  try {
    return await main(health);
  } finally {
    await health?.close();
  }
}
