/**
 * In-memory stand-ins for one resource's objects on the API server and for an informer's cache
 * of them, for unit tests of the reconcilers (the real API server is the control-plane tier's).
 * They model what the reconcilers rely on: resourceVersions (409 Conflict on a stale one),
 * AlreadyExists, NotFound, the status subresource, finalizers holding a deleted object, JSON
 * patch `test`, and a cache that lags behind until the test delivers the watch (`sync`).
 *
 * @module
 */
import { ApiError } from "../../src/k8s/client.ts";
import { objectKey } from "../../src/k8s/informer.ts";
import type {
  ApplyOptions,
  JsonPatchOp,
  ObjectOptions,
  Objects,
  WritableCache,
} from "../../src/k8s/objects.ts";

type Json = Record<string, unknown>;

function isRecord(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** RFC 7386 JSON merge patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isRecord(patch)) return structuredClone(patch);
  const out: Json = isRecord(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else out[key] = mergePatch(out[key], value);
  }
  return out;
}

/** The parent of a JSON pointer's last token, and that token. */
function pointer(root: Json, path: string): { parent: unknown; token: string } {
  const tokens = path.split("/").slice(1).map((t) => t.replaceAll("~1", "/").replaceAll("~0", "~"));
  let parent: unknown = root;
  for (const token of tokens.slice(0, -1)) {
    parent = Array.isArray(parent) ? parent[Number(token)] : (parent as Json | undefined)?.[token];
  }
  return { parent, token: tokens.at(-1) ?? "" };
}

/** What a write recorded: its verb, the object's name and what was sent. */
export interface RecordedWrite {
  verb: "create" | "replace" | "mergePatch" | "jsonPatch" | "apply" | "delete";
  name: string;
  subresource?: "status";
  body?: unknown;
  /** A dry run: nothing was stored. */
  dryRun?: boolean;
}

/** The field manager of the operator's writes, as the managed fields a dry run returns. */
const OPERATOR_MANAGER = "ip-rule-operator";

/** One resource's objects, as the API server keeps them. */
export class MemoryObjects<T> implements Objects<T> {
  /** Raw objects by cache key (`namespace/name` or `name`). */
  readonly objects = new Map<string, Json>();
  /** Every write made through the `Objects` interface, in order. */
  readonly writes: RecordedWrite[] = [];
  /** An error to answer a matching request with, instead of doing it. */
  fail: ((write: RecordedWrite) => ApiError | undefined) | undefined;
  /** Called after each write that succeeded. */
  onWrite: ((write: RecordedWrite) => void) | undefined;
  readonly #kind: string;
  readonly #narrow: (raw: unknown) => T;
  readonly #namespace: string | undefined;
  readonly #statusSubresource: boolean;
  #version = 0;

  constructor(
    kind: string,
    narrow: (raw: unknown) => T,
    options: { namespace?: string; statusSubresource?: boolean } = {},
  ) {
    this.#kind = kind;
    this.#narrow = narrow;
    this.#namespace = options.namespace;
    this.#statusSubresource = options.statusSubresource ?? true;
  }

  #key(name: string, namespace = this.#namespace): string {
    return namespace === undefined ? name : `${namespace}/${name}`;
  }

  #error(method: string, name: string, status: number, reason: string, message: string) {
    return new ApiError(method, `/${this.#kind}/${name}`, status, reason, message);
  }

  #conflict(name: string): ApiError {
    return this.#error(
      "PATCH",
      name,
      409,
      "Conflict",
      `Operation cannot be fulfilled on ${this.#kind} "${name}": the object has been modified; ` +
        "please apply your changes to the latest version and try again",
    );
  }

  /** Stores `raw` as the API server would after a write: new resourceVersion, generation. */
  #store(key: string, raw: Json, before: Json | undefined): Json {
    const meta = { ...(raw.metadata as Json | undefined) };
    const old = before?.metadata as Json | undefined;
    meta.resourceVersion = String(++this.#version);
    meta.uid = old?.uid ?? crypto.randomUUID();
    const generation = (old?.generation as number | undefined) ?? 0;
    const specChanged = JSON.stringify(before?.spec) !== JSON.stringify(raw.spec);
    meta.generation = before === undefined ? 1 : generation + (specChanged ? 1 : 0);
    if (this.#namespace !== undefined) meta.namespace ??= this.#namespace;
    const object = { ...raw, metadata: meta };
    const finalizers = (meta.finalizers as string[] | undefined) ?? [];
    if (meta.deletionTimestamp !== undefined && finalizers.length === 0) {
      this.objects.delete(key);
    } else {
      this.objects.set(key, object);
    }
    return structuredClone(object);
  }

  /** Runs a write, unless `fail` answers it with an error. */
  #write(write: RecordedWrite): void {
    const error = this.fail?.(write);
    if (error !== undefined) throw error;
    this.writes.push(write);
  }

  /** Puts an object as someone else wrote it; returns it narrowed. */
  put(raw: Json): T {
    const meta = raw.metadata as Json;
    const key = this.#key(meta.name as string, meta.namespace as string | undefined);
    return this.#narrow(this.#store(key, structuredClone(raw), this.objects.get(key)));
  }

  /** The raw object as stored, or undefined. */
  raw(name: string): Json | undefined {
    return this.objects.get(this.#key(name));
  }

  get(name: string, options: ObjectOptions = {}): Promise<T | undefined> {
    const raw = this.objects.get(this.#key(name, options.namespace ?? this.#namespace));
    return Promise.resolve(raw === undefined ? undefined : this.#narrow(structuredClone(raw)));
  }

  create(object: object, options: ObjectOptions = {}): Promise<T> {
    const raw = structuredClone(object) as Json;
    const name = (raw.metadata as Json).name as string;
    return this.#do({ verb: "create", name, body: raw }, options, (key, current) => {
      if (current !== undefined) {
        throw this.#error("POST", name, 409, "AlreadyExists", `${this.#kind} "${name}" exists`);
      }
      return this.#store(key, raw, undefined);
    });
  }

  replace(name: string, object: object, options: ObjectOptions = {}): Promise<T> {
    const raw = structuredClone(object) as Json;
    return this.#do({ verb: "replace", name, body: raw }, options, (key, current) => {
      this.#check("PUT", name, current, (raw.metadata as Json | undefined)?.resourceVersion);
      return this.#store(key, { ...raw, status: current!.status }, current);
    });
  }

  mergePatch(name: string, patch: object, options: ObjectOptions = {}): Promise<T> {
    const body = structuredClone(patch) as Json;
    const write: RecordedWrite = { verb: "mergePatch", name, body };
    if (options.subresource) write.subresource = options.subresource;
    return this.#do(write, options, (key, current) => {
      const rv = (body.metadata as Json | undefined)?.resourceVersion;
      this.#check("PATCH", name, current, rv ?? (current?.metadata as Json)?.resourceVersion);
      let next = mergePatch(current, body) as Json;
      if (this.#statusSubresource) {
        // The status subresource changes only the status; the object itself everything else.
        next = options.subresource === "status"
          ? { ...current, status: next.status }
          : { ...next, status: current!.status };
      }
      return this.#store(key, next, current);
    });
  }

  jsonPatch(name: string, ops: readonly JsonPatchOp[], options: ObjectOptions = {}): Promise<T> {
    const write: RecordedWrite = { verb: "jsonPatch", name, body: structuredClone(ops) };
    return this.#do(write, options, (key, current) => {
      this.#check("PATCH", name, current, (current?.metadata as Json)?.resourceVersion);
      const next = structuredClone(current!);
      for (const op of ops) this.#applyOp(name, next, op);
      return this.#store(key, next, current);
    });
  }

  /** One JSON patch operation on `target`; a failed `test` is the API server's 422. */
  #applyOp(name: string, target: Json, op: JsonPatchOp): void {
    const { parent, token } = pointer(target, op.path);
    const list = Array.isArray(parent) ? parent : undefined;
    const at = Number(token);
    const value = list ? list[at] : (parent as Json | undefined)?.[token];
    if (op.op === "test") {
      if (JSON.stringify(value) === JSON.stringify(op.value)) return;
      throw this.#error(
        "PATCH",
        name,
        422,
        "Invalid",
        "the server rejected our request due to an error in our request",
      );
    }
    if (op.op === "remove") {
      if (list) list.splice(at, 1);
      else delete (parent as Json)[token];
    } else if (list && op.op === "add") {
      list.splice(token === "-" ? list.length : at, 0, op.value);
    } else if (list) {
      list[at] = op.value;
    } else {
      (parent as Json)[token] = op.value;
    }
  }

  apply(name: string, object: object, options: ApplyOptions = {}): Promise<T> {
    const raw = structuredClone(object) as Json;
    const write: RecordedWrite = { verb: "apply", name, body: raw };
    if (options.dryRun) write.dryRun = true;
    return this.#do(write, options, (key, current) => {
      const meta = { ...(current?.metadata as Json | undefined), ...(raw.metadata as Json) };
      const next = { ...raw, metadata: meta, status: current?.status };
      if (!options.dryRun) return this.#store(key, next, current);
      // What the API server answers a dry run with: the result, with the applier's entry among
      // the managed fields (a stand-in: the field set itself is the real server's to compute).
      const managedFields = [
        ...((current?.metadata as Json | undefined)?.managedFields as Json[] ?? []).filter((e) =>
          e.manager !== OPERATOR_MANAGER
        ),
        { manager: OPERATOR_MANAGER, operation: "Apply", fieldsType: "FieldsV1", fieldsV1: {} },
      ];
      return structuredClone({ ...next, metadata: { ...meta, managedFields } });
    });
  }

  delete(
    name: string,
    options: { namespace?: string; resourceVersion?: string } = {},
  ): Promise<boolean> {
    let deleted = false;
    return this.#do({ verb: "delete", name, body: options }, options, (key, current) => {
      if (current === undefined) return current;
      const meta = current.metadata as Json;
      this.#check("DELETE", name, current, options.resourceVersion ?? meta.resourceVersion);
      deleted = true;
      const finalizers = (meta.finalizers as string[] | undefined) ?? [];
      if (finalizers.length === 0) this.objects.delete(key);
      else if (meta.deletionTimestamp === undefined) {
        const deletionTimestamp = new Date().toISOString();
        this.#store(key, { ...current, metadata: { ...meta, deletionTimestamp } }, current);
      }
      return current;
    }).then(() => deleted);
  }

  /** 404 when the object is missing, 409 when `resourceVersion` is not its version. */
  #check(method: string, name: string, current: Json | undefined, resourceVersion: unknown) {
    if (current === undefined) {
      throw this.#error(method, name, 404, "NotFound", `${this.#kind} "${name}" not found`);
    }
    if (resourceVersion !== (current.metadata as Json).resourceVersion) throw this.#conflict(name);
  }

  /** Records and runs one write on the object's current state, narrowing what it returns. */
  #do(
    write: RecordedWrite,
    options: { namespace?: string },
    run: (key: string, current: Json | undefined) => Json | undefined,
  ): Promise<T> {
    try {
      this.#write(write);
      const key = this.#key(write.name, options.namespace ?? this.#namespace);
      const result = run(key, this.objects.get(key));
      this.onWrite?.(write);
      return Promise.resolve(result === undefined ? undefined as T : this.#narrow(result));
    } catch (error: unknown) {
      return Promise.reject(error);
    }
  }

  /** A cache of these objects as an informer keeps it, synced now. */
  cache(onChange?: (key: string, obj: T | undefined) => void): MemoryCache<T> {
    return new MemoryCache(this, this.#narrow, onChange);
  }
}

/**
 * An informer's cache of a `MemoryObjects`: it sees changes when the test calls `sync`, and
 * reports each to `onChange` as an informer does (our own writes' `learn` is not reported).
 */
export class MemoryCache<T> implements WritableCache<T> {
  synced = true;
  readonly store = new Map<string, T>();
  readonly #objects: MemoryObjects<T>;
  readonly #narrow: (raw: unknown) => T;
  readonly #onChange: ((key: string, obj: T | undefined) => void) | undefined;

  constructor(
    objects: MemoryObjects<T>,
    narrow: (raw: unknown) => T,
    onChange?: (key: string, obj: T | undefined) => void,
  ) {
    this.#objects = objects;
    this.#narrow = narrow;
    this.#onChange = onChange;
    this.sync();
  }

  /** Delivers every change since the last sync, as the watch would. */
  sync(): void {
    const before = new Map(this.store);
    this.store.clear();
    for (const [key, raw] of this.#objects.objects) {
      this.store.set(key, this.#narrow(structuredClone(raw)));
    }
    const onChange = this.#onChange;
    if (onChange === undefined) return;
    for (const [key, obj] of this.store) {
      if (JSON.stringify(before.get(key)) !== JSON.stringify(obj)) onChange(key, obj);
    }
    for (const key of before.keys()) if (!this.store.has(key)) onChange(key, undefined);
  }

  learn(object: T): void {
    const key = objectKey(object);
    if (key !== undefined) this.store.set(key, object);
  }

  forget(key: string): void {
    this.store.delete(key);
  }
}
