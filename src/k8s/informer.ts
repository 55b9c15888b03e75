/**
 * A hardened list/watch cache of one resource (client-node's informer stops for good on most
 * errors, so we do not use it): paged list, watch from the list's resourceVersion with
 * bookmarks and a randomized server timeout, an idle watchdog for silent streams, relist on
 * 410 Gone, jittered backoff on every error, plain narrowed objects, an AbortSignal, and a
 * synced signal that consumers wait for before acting.
 */
import { ApiError, type JsonObject, type KubeClient, type Query } from "./client.ts";
import { type Resource, resourcePath } from "./resources.ts";
import { backoffDelay, type BackoffOptions, DEFAULT_BACKOFF, sleep } from "./backoff.ts";

/** How an informer lists, watches and reports. */
export interface InformerOptions<T> {
  resource: Resource;
  /** Watch one namespace only (namespaced resources). */
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
  /** Narrows a raw object; a throw reports the object through `onInvalid` and skips it. */
  narrow: (raw: unknown) => T;
  /** Called after the cache changed for one key (obj undefined: deleted). */
  onChange?: (key: string, obj: T | undefined) => void;
  /** An object that failed narrowing; it is not (or no longer) in the cache. */
  onInvalid?: (error: unknown, raw: unknown) => void;
  /** A failed list or watch, before the backoff delay. */
  onError?: (error: unknown, delayMs: number) => void;
  pageSize?: number;
  /** Server-side watch timeout is drawn from [min, max] seconds. */
  watchTimeoutSeconds?: [number, number];
  /** A watch silent for this long (no event, no bookmark) is dropped and reopened. */
  idleTimeoutMs?: number;
  backoff?: BackoffOptions;
}

/** Own-write versions remembered per object: a few writes to one object can be in flight. */
const OWN_VERSIONS_KEPT = 16;

/** A watch that ends sooner than this without an event is treated as failed (backoff). */
const QUICK_WATCH_MS = 1000;

/**
 * Longest silence of a live watch, ms: the API server sends a bookmark to every watch that
 * allows them roughly every minute (apiserver's cacher, `defaultBookmarkFrequency`), so a
 * stream silent for 90 s is dead, e.g. a node cut off while the API server restarted and forgot
 * the connection. A client that only receives never learns that otherwise: before, the
 * watchdog waited for the server-side timeout plus 30 s (4.5-8.5 minutes of stale rules).
 */
export const WATCH_SILENCE_MS = 90_000;

/** How long a watch with a server-side timeout of `timeoutSeconds` may stay silent, ms. */
export function watchIdleTimeoutMs(timeoutSeconds: number): number {
  return Math.min((timeoutSeconds + 30) * 1000, WATCH_SILENCE_MS);
}

/** Cache key of an object: `namespace/name`, or `name` for cluster-scoped objects. */
export function objectKey(raw: unknown): string | undefined {
  const meta = (raw as { metadata?: { name?: unknown; namespace?: unknown } })?.metadata;
  if (typeof meta?.name !== "string") return undefined;
  return typeof meta.namespace === "string" && meta.namespace
    ? `${meta.namespace}/${meta.name}`
    : meta.name;
}

function resourceVersionOf(raw: unknown): string | undefined {
  const rv = (raw as { metadata?: { resourceVersion?: unknown } })?.metadata?.resourceVersion;
  return typeof rv === "string" ? rv : undefined;
}

/** A list/watch cache of one resource. */
export class Informer<T> {
  /** Narrowed objects by key; read it only once `synced` is true. */
  readonly store = new Map<string, T>();
  readonly #versions = new Map<string, string>();
  /** Watch events received (bookmarks included), to tell an empty watch from a live one. */
  #watchEvents = 0;
  /** Versions of our own writes (see `learn`) whose watch events are still due, by key. */
  readonly #ownVersions = new Map<string, string[]>();
  readonly #options: InformerOptions<T>;
  readonly #client: KubeClient;
  #synced = false;
  #syncWaiters: (() => void)[] = [];
  #healthy = false;
  /** The last list or watch error, cleared by the next success. */
  lastError: unknown = undefined;
  /**
   * The version to watch from: the list's, then each watch event's (a watch that fails resumes
   * where it was, not from the list's version, which may be long expired: 410 and a relist).
   * Undefined: list first.
   */
  #rv: string | undefined;

  constructor(client: KubeClient, options: InformerOptions<T>) {
    this.#client = client;
    this.#options = options;
  }

  /** Whether the first full list has been loaded. */
  get synced(): boolean {
    return this.#synced;
  }

  /** Whether the last list/watch request succeeded (false while retrying). */
  get healthy(): boolean {
    return this.#healthy;
  }

  /** Resolves once synced (or when the signal aborts). */
  whenSynced(signal?: AbortSignal): Promise<void> {
    if (this.#synced || signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        signal?.removeEventListener("abort", done);
        resolve();
      };
      this.#syncWaiters.push(done);
      signal?.addEventListener("abort", done, { once: true });
    });
  }

  #path(): string {
    const { resource, namespace } = this.#options;
    return resourcePath(resource, namespace === undefined ? {} : { namespace });
  }

  #selectors(): Query {
    return {
      labelSelector: this.#options.labelSelector,
      fieldSelector: this.#options.fieldSelector,
    };
  }

  /**
   * Takes in an object as the API server returned it to our own write (narrowed already, by the
   * typed client that wrote it), before its watch event arrives: later reads of the cache see the
   * write at once, and the watch event of that version (or of an earlier own write of the same
   * object, arriving late) changes nothing and calls no `onChange`.
   */
  learn(obj: T): void {
    const key = objectKey(obj);
    const rv = resourceVersionOf(obj);
    if (key === undefined || rv === undefined) return;
    this.store.set(key, obj);
    this.#versions.set(key, rv);
    const own = this.#ownVersions.get(key) ?? [];
    own.push(rv);
    this.#ownVersions.set(key, own.slice(-OWN_VERSIONS_KEPT));
  }

  /** Removes an object our own write deleted; its DELETED event then changes nothing. */
  forget(key: string): void {
    this.store.delete(key);
    this.#versions.delete(key);
    this.#ownVersions.delete(key);
  }

  /** Whether a watched version is one of our own writes already in the cache (consumes it). */
  #ownVersion(key: string, rv: string | undefined): boolean {
    const own = rv === undefined ? undefined : this.#ownVersions.get(key);
    const at = own?.indexOf(rv!) ?? -1;
    if (at < 0) return false;
    own!.splice(0, at + 1);
    if (own!.length === 0) this.#ownVersions.delete(key);
    return true;
  }

  /** Stores one raw object; returns whether the cache changed. */
  #put(raw: unknown): void {
    const key = objectKey(raw);
    if (key === undefined) return;
    const rv = resourceVersionOf(raw);
    if (this.#ownVersion(key, rv)) return;
    if (rv !== undefined && this.#versions.get(key) === rv) return;
    let obj: T;
    try {
      obj = this.#options.narrow(raw);
    } catch (err: unknown) {
      this.#options.onInvalid?.(err, raw);
      this.#remove(key);
      return;
    }
    this.store.set(key, obj);
    if (rv !== undefined) this.#versions.set(key, rv);
    this.#options.onChange?.(key, obj);
  }

  #remove(key: string): void {
    this.#versions.delete(key);
    if (this.store.delete(key)) this.#options.onChange?.(key, undefined);
  }

  /** Lists every page; replaces the cache; returns the list's resourceVersion. */
  async #list(signal: AbortSignal): Promise<string> {
    const seen = new Set<string>();
    let cont: string | undefined;
    let rv = "";
    do {
      const page: JsonObject = await this.#client.request("GET", this.#path(), {
        query: { ...this.#selectors(), limit: this.#options.pageSize ?? 500, continue: cont },
        signal,
      });
      const items = Array.isArray(page.items) ? page.items : [];
      for (const item of items) {
        const key = objectKey(item);
        if (key !== undefined) seen.add(key);
        this.#put(item);
      }
      const meta = (page.metadata ?? {}) as { continue?: string; resourceVersion?: string };
      cont = meta.continue || undefined;
      rv = meta.resourceVersion ?? rv;
    } while (cont);
    for (const key of [...this.store.keys()]) if (!seen.has(key)) this.#remove(key);
    for (const key of [...this.#versions.keys()]) if (!seen.has(key)) this.#versions.delete(key);
    return rv;
  }

  /** Watches from `rv` until the server closes the stream, keeping `#rv` at the last version. */
  async #watch(rv: string, signal: AbortSignal): Promise<void> {
    const [min, max] = this.#options.watchTimeoutSeconds ?? [240, 480];
    const timeoutSeconds = Math.floor(min + Math.random() * (max - min + 1));
    const idleMs = this.#options.idleTimeoutMs ?? watchIdleTimeoutMs(timeoutSeconds);
    const stream = new AbortController();
    const stop = () => stream.abort();
    signal.addEventListener("abort", stop, { once: true });
    let idle = setTimeout(stop, idleMs);
    const silent = (cause?: unknown) =>
      new Error(
        `Watch of "${this.#path()}" was silent for ${idleMs} ms`,
        cause === undefined ? undefined : { cause },
      );
    try {
      const events = this.#client.watch(
        this.#path(),
        {
          ...this.#selectors(),
          resourceVersion: rv,
          allowWatchBookmarks: true,
          timeoutSeconds,
        },
        stream.signal,
        () => {
          // Open again after an outage: healthy now, not at the next event or bookmark.
          this.#healthy = true;
          this.lastError = undefined;
        },
      );
      for await (const event of events) {
        this.#watchEvents++;
        clearTimeout(idle);
        idle = setTimeout(stop, idleMs);
        this.#healthy = true;
        this.lastError = undefined;
        if (event.type === "ERROR") {
          const status = event.object as { code?: number; reason?: string; message?: string };
          throw new ApiError(
            "WATCH",
            this.#path(),
            status.code ?? 500,
            status.reason ?? "",
            status.message ?? "watch error",
          );
        }
        this.#rv = resourceVersionOf(event.object) ?? this.#rv;
        if (event.type === "BOOKMARK") continue;
        if (event.type === "DELETED") {
          const key = objectKey(event.object);
          if (key !== undefined) this.#remove(key);
        } else {
          this.#put(event.object);
        }
      }
    } catch (error: unknown) {
      // The watchdog's abort surfaces as the body read's AbortError: say why it was aborted.
      if (stream.signal.aborted && !signal.aborted) throw silent(error);
      throw error;
    } finally {
      clearTimeout(idle);
      signal.removeEventListener("abort", stop);
    }
    // A stream that ends quietly on the watchdog's abort was silent too (no error to wrap).
    if (stream.signal.aborted && !signal.aborted) throw silent();
  }

  /** Lists and watches until the signal aborts; never throws for API errors. */
  async run(signal: AbortSignal): Promise<void> {
    let attempt = 0;
    while (!signal.aborted) {
      try {
        if (this.#rv === undefined) {
          this.#rv = await this.#list(signal);
          this.#healthy = true;
          this.lastError = undefined;
          if (!this.#synced) {
            this.#synced = true;
            for (const waiter of this.#syncWaiters.splice(0)) waiter();
          }
        }
        const opened = Date.now();
        const seen = this.#watchEvents;
        await this.#watch(this.#rv, signal);
        if (this.#watchEvents === seen && Date.now() - opened < QUICK_WATCH_MS) {
          // Ended at once with nothing in it (e.g. a proxy closing streamed responses): wait
          // as after an error, or the loop would reopen watches without pause.
          await sleep(backoffDelay(attempt++, this.#options.backoff ?? DEFAULT_BACKOFF), signal);
        } else {
          attempt = 0;
        }
      } catch (err: unknown) {
        if (signal.aborted) break;
        this.#healthy = false;
        this.lastError = err;
        if (err instanceof ApiError && err.status === 410) {
          this.#rv = undefined; // too old: relist at once
          this.#options.onError?.(err, 0);
          continue;
        }
        const delay = backoffDelay(attempt++, this.#options.backoff ?? DEFAULT_BACKOFF);
        this.#options.onError?.(err, delay);
        await sleep(delay, signal);
      }
    }
  }
}
