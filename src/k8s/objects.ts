/**
 * Typed access to one resource: reads and writes through the API client, every object the API
 * server returns run through the resource's narrower, so code past this boundary holds the
 * operator's types, never cast JSON. `Objects<T>` and `Cache<T>` are what reconcilers depend
 * on; the API client and the informer are one implementation, in-memory fakes another.
 */
import { ApiError, type KubeClient } from "./client.ts";
import { objectKey } from "./informer.ts";
import type { Resource } from "./resources.ts";

/** How soon a reconcile looks again after a write found its cache stale, ms. */
export const STALE_REQUEUE_MS = 1000;

/** A write's `test` on the cached object failed: the cache is out of date (see `staleWrite`). */
export class StaleCacheError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StaleCacheError";
  }
}

/**
 * Whether a write failed because what it was computed from is out of date: a stale
 * resourceVersion (409 Conflict, or AlreadyExists for a create), an object gone meanwhile (404),
 * a failed `test` (StaleCacheError). The cache catches up through its watch; the caller
 * requeues instead of reporting an error.
 */
export function staleWrite(error: unknown): boolean {
  return error instanceof StaleCacheError ||
    (error instanceof ApiError && (error.status === 409 || error.status === 404));
}

/** Per-request options: another namespace than the client's, a subresource. */
export interface ObjectOptions {
  namespace?: string;
  subresource?: "status";
}

/** Options of a server-side apply. */
export interface ApplyOptions extends ObjectOptions {
  /** Only compute the result (`dryRun=All`): nothing is stored. */
  dryRun?: boolean;
}

/** One JSON patch (RFC 6902) operation, of those the operator sends. */
export type JsonPatchOp =
  | { op: "test"; path: string; value: unknown }
  | { op: "remove"; path: string }
  | { op: "add" | "replace"; path: string; value: unknown };

/** Typed reads and writes of one resource's objects. */
export interface Objects<T> {
  /** GET; undefined when the object does not exist. */
  get(name: string, options?: ObjectOptions): Promise<T | undefined>;
  /** POST a new object (409 when it exists). */
  create(object: object, options?: ObjectOptions): Promise<T>;
  /** PUT (409 when `metadata.resourceVersion` is stale). */
  replace(name: string, object: object, options?: ObjectOptions): Promise<T>;
  /** JSON merge patch (409 when it names a stale `metadata.resourceVersion`). */
  mergePatch(name: string, patch: object, options?: ObjectOptions): Promise<T>;
  /** JSON patch: its `test` operations make it safe without a resourceVersion. */
  jsonPatch(name: string, ops: readonly JsonPatchOp[], options?: ObjectOptions): Promise<T>;
  /** Server-side apply with the operator's field manager, forcing ownership. */
  apply(name: string, object: object, options?: ApplyOptions): Promise<T>;
  /** DELETE; false when already gone, 409 when the resourceVersion precondition fails. */
  delete(
    name: string,
    options?: { namespace?: string; resourceVersion?: string },
  ): Promise<boolean>;
}

/** What a reconciler reads of an informer: its narrowed objects, once synced. */
export interface Cache<T> {
  /** Whether the first full list has been loaded; nothing may be acted on before. */
  readonly synced: boolean;
  /** Objects by `namespace/name` (or `name`). */
  readonly store: ReadonlyMap<string, T>;
}

/** A cache that takes in the results of our own writes at once (see `Informer.learn`). */
export interface WritableCache<T> extends Cache<T> {
  /** An object as our write returned it: in the cache now, its watch event changes nothing. */
  learn(object: T): void;
  /** An object our write deleted. */
  forget(key: string): void;
}

/** `Objects<T>` over the API client. */
export class ObjectClient<T> implements Objects<T> {
  readonly #client: KubeClient;
  readonly #resource: Resource;
  readonly #narrow: (raw: unknown) => T;
  readonly #namespace: string | undefined;

  /** Objects of `resource`, narrowed by `narrow`, in `namespace` unless a call names another. */
  constructor(
    client: KubeClient,
    resource: Resource,
    options: { narrow: (raw: unknown) => T; namespace?: string },
  ) {
    this.#client = client;
    this.#resource = resource;
    this.#narrow = options.narrow;
    this.#namespace = options.namespace;
  }

  #options(options: ObjectOptions): ObjectOptions {
    const namespace = options.namespace ?? this.#namespace;
    return {
      ...(namespace === undefined ? {} : { namespace }),
      ...(options.subresource === undefined ? {} : { subresource: options.subresource }),
    };
  }

  async get(name: string, options: ObjectOptions = {}): Promise<T | undefined> {
    const raw = await this.#client.get(this.#resource, name, this.#options(options).namespace);
    return raw === undefined ? undefined : this.#narrow(raw);
  }

  async create(object: object, options: ObjectOptions = {}): Promise<T> {
    const namespace = this.#options(options).namespace;
    return this.#narrow(await this.#client.create(this.#resource, { ...object }, namespace));
  }

  async replace(name: string, object: object, options: ObjectOptions = {}): Promise<T> {
    return this.#narrow(
      await this.#client.replace(this.#resource, name, { ...object }, this.#options(options)),
    );
  }

  async mergePatch(name: string, patch: object, options: ObjectOptions = {}): Promise<T> {
    return this.#narrow(
      await this.#client.mergePatch(this.#resource, name, { ...patch }, this.#options(options)),
    );
  }

  async jsonPatch(
    name: string,
    ops: readonly JsonPatchOp[],
    options: ObjectOptions = {},
  ): Promise<T> {
    return this.#narrow(
      await this.#client.jsonPatch(this.#resource, name, ops, this.#options(options)),
    );
  }

  async apply(name: string, object: object, options: ApplyOptions = {}): Promise<T> {
    return this.#narrow(
      await this.#client.apply(this.#resource, name, { ...object }, {
        ...this.#options(options),
        ...(options.dryRun ? { dryRun: true } : {}),
      }),
    );
  }

  delete(
    name: string,
    options: { namespace?: string; resourceVersion?: string } = {},
  ): Promise<boolean> {
    const namespace = options.namespace ?? this.#namespace;
    return this.#client.delete(this.#resource, name, {
      ...(namespace === undefined ? {} : { namespace }),
      ...(options.resourceVersion === undefined
        ? {}
        : { resourceVersion: options.resourceVersion }),
    });
  }
}

/**
 * A cache whose `learn` and `forget` are also reported to `onChange` (key, object or undefined),
 * for counts kept per event that must see our own writes too: an informer reports only the
 * watch events of others' writes.
 */
export function reportingCache<T>(
  cache: WritableCache<T>,
  onChange: (key: string, object: T | undefined) => void,
): WritableCache<T> {
  return {
    get synced() {
      return cache.synced;
    },
    get store() {
      return cache.store;
    },
    learn(object: T): void {
      cache.learn(object);
      const key = objectKey(object);
      if (key !== undefined) onChange(key, cache.store.get(key));
    },
    forget(key: string): void {
      cache.forget(key);
      onChange(key, undefined);
    },
  };
}
