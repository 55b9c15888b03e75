/**
 * The API client: client-node's kubeconfig handling for configuration and credentials
 * (kubeconfig files, in-cluster service account with token rotation, exec plugins; see
 * kubeconfig.ts), and Deno's fetch over one pooled `Deno.createHttpClient` for requests, so
 * connections are reused and a watch's streaming body stops on abort.
 */
import type { Logger } from "../log.ts";
import { type KubeAccess, loadKubeAccess } from "./kubeconfig.ts";
import { apiVersionOf, type Resource, resourcePath } from "./resources.ts";

/** The field manager of every write the operator makes. */
export const FIELD_MANAGER = "ip-rule-operator";

/** A failed API request: HTTP status and the API's Status reason and message. */
export class ApiError extends Error {
  /** HTTP status code, 0 when no response arrived. */
  readonly status: number;
  /** The Status object's `reason` (e.g. "NotFound", "Conflict", "Expired"), "" when none. */
  readonly reason: string;
  readonly method: string;
  readonly path: string;

  constructor(method: string, path: string, status: number, reason: string, detail: string) {
    super(`${method} ${path} failed: ${status ? `${status} ${reason || "error"}: ` : ""}${detail}`);
    this.name = "ApiError";
    this.status = status;
    this.reason = reason;
    this.method = method;
    this.path = path;
  }
}

/** One watch event, the object kept as plain JSON. */
export interface WatchEvent {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: Record<string, unknown>;
}

/** Query parameters of a request. */
export type Query = Record<string, string | number | boolean | undefined>;

/** Options of one request. */
export interface RequestOptions {
  query?: Query;
  body?: unknown;
  contentType?: string;
  signal?: AbortSignal;
}

/** Where to find the API server and credentials. */
export interface ClientOptions {
  /** Kubeconfig path; default: $KUBECONFIG, ~/.kube/config, then in-cluster. */
  kubeconfig?: string;
}

/** A JSON object from the API. */
export type JsonObject = Record<string, unknown>;

/** Where a write goes: the object's namespace, its status subresource. */
export interface WriteOptions {
  namespace?: string;
  subresource?: "status";
}

/** A connection to one API server with the credentials of one identity. */
export class KubeClient {
  readonly server: string;
  readonly #access: KubeAccess;
  readonly #http: Deno.HttpClient;
  /** Requests made, by verb, for metrics and benchmarks. */
  readonly requests = new Map<string, number>();
  /**
   * Told of each response (status 0: none arrived) and the seconds until its headers, for the
   * metrics of API errors and write latency.
   */
  observer?: (method: string, status: number, seconds: number) => void;

  private constructor(access: KubeAccess, http: Deno.HttpClient) {
    this.#access = access;
    this.server = access.server.replace(/\/+$/, "");
    this.#http = http;
  }

  /**
   * `connect` at an executable's start: when the kubeconfig is unusable, logs "Kubeconfig not
   * loaded" with the reason and returns undefined, for the caller to exit 1.
   */
  static async connectOrReport(
    kubeconfig: string | undefined,
    log: Pick<Logger, "error">,
  ): Promise<KubeClient | undefined> {
    try {
      return await KubeClient.connect(kubeconfig === undefined ? {} : { kubeconfig });
    } catch (error: unknown) {
      log.error("Kubeconfig not loaded", { err: error });
      return undefined;
    }
  }

  /** Loads the configuration and opens the pooled HTTP client. */
  static async connect(options: ClientOptions = {}): Promise<KubeClient> {
    const access = await loadKubeAccess(
      options.kubeconfig ? { kubeconfig: options.kubeconfig } : {},
    );
    const { ca, cert, key } = access;
    const http = Deno.createHttpClient({
      ...(ca ? { caCerts: [ca] } : {}),
      ...(cert && key ? { cert, key } : {}),
      poolIdleTimeout: 90_000,
    });
    return new KubeClient(access, http);
  }

  /** Closes the pooled HTTP client. Idempotent. */
  close(): void {
    try {
      this.#http.close();
    } catch {
      // Already closed.
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }

  async #headers(contentType?: string): Promise<Headers> {
    // Re-applied per request: the service-account token is rotated on disk.
    const headers = new Headers();
    await this.#access.authenticate(headers);
    headers.set("Accept", "application/json");
    if (contentType) headers.set("Content-Type", contentType);
    return headers;
  }

  #url(path: string, query: Query = {}): string {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, String(v));
    const qs = params.toString();
    return `${this.server}${path}${qs ? `?${qs}` : ""}`;
  }

  /** Sends one request; the response body is parsed JSON, errors are ApiErrors. */
  async request(method: string, path: string, options: RequestOptions = {}): Promise<JsonObject> {
    const response = await this.#send(method, path, options);
    const text = await response.text();
    return text ? JSON.parse(text) as JsonObject : {};
  }

  async #send(method: string, path: string, options: RequestOptions): Promise<Response> {
    this.requests.set(method, (this.requests.get(method) ?? 0) + 1);
    const started = performance.now();
    const observe = (status: number) =>
      this.observer?.(method, status, (performance.now() - started) / 1000);
    let response: Response;
    try {
      response = await fetch(this.#url(path, options.query), {
        method,
        headers: await this.#headers(
          options.body === undefined ? undefined : options.contentType ?? "application/json",
        ),
        ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
        ...(options.signal ? { signal: options.signal } : {}),
        client: this.#http,
      });
    } catch (err: unknown) {
      if (options.signal?.aborted) throw err;
      observe(0);
      const detail = err instanceof Error ? err.message : String(err);
      throw new ApiError(method, path, 0, "", detail);
    }
    observe(response.status);
    if (!response.ok) {
      const text = await response.text();
      let reason = "";
      let message = text.slice(0, 500);
      try {
        const status = JSON.parse(text) as { reason?: string; message?: string };
        reason = status.reason ?? "";
        message = status.message ?? message;
      } catch {
        // Not a Status object; keep the raw text.
      }
      throw new ApiError(method, path, response.status, reason, message);
    }
    return response;
  }

  /** GET one object; undefined when it does not exist. */
  async get(resource: Resource, name: string, namespace?: string): Promise<JsonObject | undefined> {
    try {
      return await this.request("GET", resourcePath(resource, { name, ...ns(namespace) }));
    } catch (err: unknown) {
      if (err instanceof ApiError && err.status === 404) return undefined;
      throw err;
    }
  }

  /** POST a new object. */
  create(resource: Resource, object: JsonObject, namespace?: string): Promise<JsonObject> {
    const body = { apiVersion: apiVersionOf(resource), kind: resource.kind, ...object };
    return this.request("POST", resourcePath(resource, ns(namespace)), {
      body,
      query: { fieldManager: FIELD_MANAGER },
    });
  }

  /** PUT an object (optimistic concurrency through its resourceVersion). */
  replace(
    resource: Resource,
    name: string,
    object: JsonObject,
    options: WriteOptions = {},
  ): Promise<JsonObject> {
    const body = { apiVersion: apiVersionOf(resource), kind: resource.kind, ...object };
    return this.#write("PUT", resource, name, body, "application/json", options);
  }

  /** PATCH with a JSON merge patch (never client-node's JSON-patch default). */
  mergePatch(
    resource: Resource,
    name: string,
    patch: JsonObject,
    options: WriteOptions = {},
  ): Promise<JsonObject> {
    return this.#write("PATCH", resource, name, patch, "application/merge-patch+json", options);
  }

  /** PATCH with a JSON patch (RFC 6902): `test` operations guard it without a resourceVersion. */
  jsonPatch(
    resource: Resource,
    name: string,
    ops: readonly unknown[],
    options: WriteOptions = {},
  ): Promise<JsonObject> {
    return this.#write("PATCH", resource, name, ops, "application/json-patch+json", options);
  }

  /**
   * Server-side apply with the operator's field manager, taking ownership of conflicts;
   * `dryRun` only computes the result (nothing is stored).
   */
  apply(
    resource: Resource,
    name: string,
    object: JsonObject,
    options: WriteOptions & { dryRun?: boolean } = {},
  ): Promise<JsonObject> {
    const body = {
      apiVersion: apiVersionOf(resource),
      kind: resource.kind,
      ...object,
      metadata: { ...(object.metadata as JsonObject | undefined), name, ...ns(options.namespace) },
    };
    const { dryRun, ...target } = options;
    return this.#write("PATCH", resource, name, body, "application/apply-patch+yaml", target, {
      force: true,
      ...(dryRun ? { dryRun: "All" } : {}),
    });
  }

  /** One write to an object (or its subresource) with the operator's field manager. */
  #write(
    method: "PUT" | "PATCH",
    resource: Resource,
    name: string,
    body: unknown,
    contentType: string,
    options: WriteOptions,
    query: Query = {},
  ): Promise<JsonObject> {
    return this.request(method, resourcePath(resource, { name, ...options }), {
      body,
      contentType,
      query: { fieldManager: FIELD_MANAGER, ...query },
    });
  }

  /** DELETE an object; true when it was deleted, false when it was already gone. */
  async delete(
    resource: Resource,
    name: string,
    options: { namespace?: string; resourceVersion?: string } = {},
  ): Promise<boolean> {
    const body = options.resourceVersion
      ? { preconditions: { resourceVersion: options.resourceVersion } }
      : undefined;
    try {
      await this.request("DELETE", resourcePath(resource, { name, ...ns(options.namespace) }), {
        ...(body ? { body } : {}),
      });
      return true;
    } catch (err: unknown) {
      if (err instanceof ApiError && err.status === 404) return false;
      throw err;
    }
  }

  /**
   * Opens a watch and yields its events until the server ends it or the signal aborts. The
   * caller handles ERROR events (410 Gone means relist).
   */
  async *watch(
    path: string,
    query: Query,
    signal: AbortSignal,
    onOpen?: () => void,
  ): AsyncGenerator<WatchEvent> {
    const response = await this.#send("GET", path, { query: { ...query, watch: true }, signal });
    onOpen?.();
    const body = response.body;
    if (!body) return;
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += value;
        let newline: number;
        while ((newline = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, newline).trim();
          buffer = buffer.slice(newline + 1);
          if (line) yield JSON.parse(line) as WatchEvent;
        }
      }
    } finally {
      await reader.cancel().catch(() => {});
    }
  }
}

function ns(namespace: string | undefined): { namespace?: string } {
  return namespace === undefined ? {} : { namespace };
}
