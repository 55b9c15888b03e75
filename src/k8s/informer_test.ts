import assert from "node:assert/strict";
import { ApiError, type KubeClient } from "./client.ts";
import {
  Informer,
  type InformerOptions,
  objectKey,
  WATCH_SILENCE_MS,
  watchIdleTimeoutMs,
} from "./informer.ts";
import { RESOURCES } from "./resources.ts";
import { trackTimers } from "../../tests/support/timers.ts";

/** A client whose list is empty and whose watches end at once, empty (as behind some proxies). */
function emptyWatchClient() {
  const calls = { list: 0, watch: 0 };
  const client = {
    request: () => {
      calls.list++;
      return Promise.resolve({ items: [], metadata: { resourceVersion: "1" } });
    },
    // deno-lint-ignore require-yield
    watch: async function* () {
      calls.watch++;
      // A macrotask, as a real request takes: without a backoff the loop still lets timers run.
      await new Promise((r) => setTimeout(r, 0));
    },
  };
  return { client: client as unknown as KubeClient, calls };
}

Deno.test("Informer backs off when watches end at once without an event", async () => {
  const { client, calls } = emptyWatchClient();
  const informer = new Informer(client, {
    resource: RESOURCES.ipRuleConfigs,
    narrow: (raw) => raw,
    backoff: { initialMs: 50, factor: 2, maxMs: 1000 },
  });
  const stop = new AbortController();
  const running = informer.run(stop.signal);
  await new Promise((r) => setTimeout(r, 400));
  stop.abort();
  await running;
  assert.equal(informer.synced, true);
  assert.equal(calls.list, 1);
  // 25-50, 50-100, 100-200 ms ... waits: a handful of watches in 400 ms, not thousands.
  assert.ok(calls.watch >= 2 && calls.watch <= 6, `${calls.watch} watches in 400 ms`);
});

Deno.test("Informer.learn(): our writes are in the cache at once and their watch events change nothing", async () => {
  const obj = (rv: string, state: string) => ({
    metadata: { name: "c", resourceVersion: rv },
    spec: { state },
  });
  const events: { type: string; object: unknown }[] = [];
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const client = {
    request: () =>
      Promise.resolve({ items: [obj("1", "present")], metadata: { resourceVersion: "1" } }),
    watch: async function* (_path: string, _query: unknown, signal: AbortSignal) {
      await released;
      yield* events;
      await new Promise((r) => signal.addEventListener("abort", r, { once: true }));
    },
  } as unknown as KubeClient;
  const changes: string[] = [];
  const informer = new Informer<{ spec: { state: string } }>(client, {
    resource: RESOURCES.ipRuleConfigs,
    narrow: (raw) => raw as { spec: { state: string } },
    onChange: (key, o) => changes.push(`${key}:${o?.spec.state ?? "deleted"}`),
  });
  const stop = new AbortController();
  const running = informer.run(stop.signal);
  await informer.whenSynced(stop.signal);
  changes.length = 0;

  // Two own writes: absent (rv 2), then present again (rv 3).
  informer.learn(obj("2", "absent"));
  informer.learn(obj("3", "present"));
  assert.equal(informer.store.get("c")?.spec.state, "present");
  // Their events arrive late, in order; then someone else's change (rv 4), then our delete.
  events.push(
    { type: "MODIFIED", object: obj("2", "absent") },
    { type: "MODIFIED", object: obj("3", "present") },
    { type: "MODIFIED", object: obj("4", "absent") },
  );
  release();
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(changes, ["c:absent"]); // only the foreign change
  assert.equal(informer.store.get("c")?.spec.state, "absent");
  informer.forget("c");
  assert.equal(informer.store.has("c"), false);
  stop.abort();
  await running;
});

type Raw = { metadata: { name: string; resourceVersion: string }; spec?: { v: string } };
type Event = { type: string; object: unknown };
type WatchScript = (signal: AbortSignal, onOpen?: () => void) => AsyncGenerator<Event>;

function raw(name: string, rv: string, v = rv): Raw {
  return { metadata: { name, resourceVersion: rv }, spec: { v } };
}

/**
 * A KubeClient whose lists answer the given pages in turn and whose watches run the given
 * scripts in turn (the last one again when they run out); it records the queries.
 */
function scriptedClient(lists: object[], watches: WatchScript[]) {
  const seen = {
    lists: [] as Record<string, unknown>[],
    watches: [] as Record<string, unknown>[],
    paths: [] as string[],
    methods: [] as string[],
  };
  const client = {
    request: (method: string, path: string, options: { query: Record<string, unknown> }) => {
      seen.methods.push(method);
      seen.paths.push(path);
      seen.lists.push(options.query);
      const page = lists[Math.min(seen.lists.length, lists.length) - 1];
      return Promise.resolve(structuredClone(page));
    },
    watch: (
      path: string,
      query: Record<string, unknown>,
      signal: AbortSignal,
      onOpen?: () => void,
    ) => {
      seen.paths.push(path);
      seen.watches.push(query);
      return watches[Math.min(seen.watches.length, watches.length) - 1]!(signal, onOpen);
    },
  };
  return { client: client as unknown as KubeClient, seen };
}

/** A watch that stays open, silent, until it is aborted; `opened` resolves when it opens. */
function silentWatch(): { script: WatchScript; opened: Promise<void> } {
  const opened = Promise.withResolvers<void>();
  // deno-lint-ignore require-yield
  const script = async function* (signal: AbortSignal, onOpen?: () => void) {
    onOpen?.();
    opened.resolve();
    await new Promise((r) => signal.addEventListener("abort", r, { once: true }));
  };
  return { script, opened: opened.promise };
}

function newInformer(
  client: KubeClient,
  log: string[],
  options: Partial<InformerOptions<Raw>> = {},
) {
  return new Informer<Raw>(client, {
    resource: RESOURCES.ipRuleConfigs,
    narrow: (r) => r as Raw,
    onChange: (key, obj) => log.push(`${key}=${obj?.spec?.v ?? "deleted"}`),
    onError: (err, delayMs) =>
      log.push(`error ${err instanceof ApiError ? err.status : String(err)} ${delayMs}`),
    backoff: { initialMs: 60_000, factor: 2, maxMs: 60_000 }, // a backoff would hang the test
    ...options,
  });
}

/** A {@link newInformer} running until its `stop` aborts. */
function runInformer(client: KubeClient) {
  const log: string[] = [];
  const informer = newInformer(client, log);
  const stop = new AbortController();
  return { log, informer, stop, running: informer.run(stop.signal) };
}

Deno.test("Informer relists at once on 410 Gone and the relisted store replaces the old", async () => {
  const last = silentWatch();
  const { client, seen } = scriptedClient(
    [
      { items: [raw("a", "1"), raw("b", "2")], metadata: { resourceVersion: "10" } },
      { items: [raw("a", "15", "a2"), raw("d", "16")], metadata: { resourceVersion: "20" } },
    ],
    [
      async function* () {
        yield { type: "ADDED", object: raw("c", "11") };
        yield { type: "ERROR", object: { kind: "Status", code: 410, reason: "Expired" } };
      },
      last.script,
    ],
  );
  const { log, informer, stop, running } = runInformer(client);
  await last.opened;
  // b (missing from the relist) and c (seen only by the expired watch) are gone; a is the
  // relisted version; the new watch starts from the relist's version.
  assert.deepEqual([...informer.store.keys()].sort(), ["a", "d"]);
  assert.equal(informer.store.get("a")?.spec?.v, "a2");
  assert.deepEqual(seen.watches.map((q) => q.resourceVersion), ["10", "20"]);
  assert.equal(seen.lists.length, 2);
  assert.deepEqual(log, [
    "a=1",
    "b=2",
    "c=11",
    "error 410 0",
    "a=a2",
    "d=16",
    "b=deleted",
    "c=deleted",
  ]);
  assert.equal(informer.healthy, true);
  stop.abort();
  await running;
});

Deno.test("watchIdleTimeoutMs() drops a watch silent past the API server's bookmark heartbeat", () => {
  // Bookmarks come roughly every minute: a longer silence means a dead stream, however long
  // the server-side timeout (240-480 s by default) would let it run.
  for (const seconds of [240, 300, 480]) {
    const idle = watchIdleTimeoutMs(seconds);
    assert.ok(idle > 60_000 && idle <= 90_000, `${seconds} s timeout: idle ${idle} ms`);
  }
  assert.equal(watchIdleTimeoutMs(480), WATCH_SILENCE_MS);
  // A short server-side timeout ends the stream first anyway.
  assert.equal(watchIdleTimeoutMs(5), 35_000);
});

/**
 * Runs an informer whose watches are `watch` with a 30 ms watchdog until its first error; returns
 * that error and the stopped informer.
 */
async function firstWatchdogError(
  watch: (path: string, query: unknown, signal: AbortSignal) => AsyncGenerator<never>,
) {
  const errors: unknown[] = [];
  const client = {
    request: () => Promise.resolve({ items: [], metadata: { resourceVersion: "1" } }),
    watch,
  } as unknown as KubeClient;
  const informer = new Informer(client, {
    resource: RESOURCES.ipRuleConfigs,
    narrow: (raw) => raw,
    idleTimeoutMs: 30,
    backoff: { initialMs: 1000, factor: 2, maxMs: 1000 },
    onError: (error) => errors.push(error),
  });
  const stop = new AbortController();
  const running = informer.run(stop.signal);
  while (errors.length === 0) await new Promise((r) => setTimeout(r, 10));
  stop.abort();
  await running;
  return { error: errors[0] as Error, informer };
}

Deno.test("Informer reports a watch dropped by its watchdog as silent, not as aborted", async () => {
  // A stream that never delivers: its body read fails with the abort, as fetch's does.
  // deno-lint-ignore require-yield
  const { error, informer } = await firstWatchdogError(async function* (_path, _query, signal) {
    await new Promise((_, reject) =>
      signal.addEventListener("abort", () => reject(signal.reason), { once: true })
    );
  });
  assert.match(String(error), /Watch of ".*ipruleconfigs" was silent for 30 ms/);
  assert.ok(error.cause instanceof Error, "the abort it ended with");
  assert.equal(informer.healthy, false);
});

Deno.test("Informer reports a watch that ends quietly when its watchdog drops it as silent, without a cause", async () => {
  // deno-lint-ignore require-yield
  const { error, informer } = await firstWatchdogError(async function* (_path, _query, signal) {
    await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
  });
  assert.match(String(error), /was silent for 30 ms/);
  assert.equal("cause" in error, false);
  assert.equal(informer.healthy, false);
});

Deno.test("Informer reports no error for the watch its own stop ends", async () => {
  const errors: unknown[] = [];
  const opened = Promise.withResolvers<void>();
  const client = {
    request: () => Promise.resolve({ items: [], metadata: { resourceVersion: "1" } }),
    // deno-lint-ignore require-yield
    watch: async function* (_path: string, _query: unknown, signal: AbortSignal) {
      opened.resolve();
      await new Promise((_, reject) =>
        signal.addEventListener("abort", () => reject(signal.reason), { once: true })
      );
    },
  } as unknown as KubeClient;
  const informer = new Informer(client, {
    resource: RESOURCES.ipRuleConfigs,
    narrow: (raw) => raw,
    onError: (error) => errors.push(error),
  });
  const stop = new AbortController();
  const running = informer.run(stop.signal);
  await opened.promise;
  stop.abort();
  await running;
  assert.deepEqual(errors, []);
  assert.equal(informer.lastError, undefined);
});

/** A watch that yields `events`, then ends (as at the server-side timeout). */
function endingWatch(...events: Event[]): WatchScript {
  return async function* (_signal, onOpen) {
    onOpen?.();
    await Promise.resolve();
    yield* events;
  };
}

/** Replaces Math.random while the returned value is in scope. */
function fixedRandom(value: number): Disposable {
  const real = Math.random;
  Math.random = () => value;
  return { [Symbol.dispose]: () => (Math.random = real) };
}

Deno.test("objectKey() is namespace/name, or the name alone without a namespace", () => {
  assert.equal(objectKey({ metadata: { name: "a", namespace: "ns" } }), "ns/a");
  assert.equal(objectKey({ metadata: { name: "a", namespace: "" } }), "a");
  assert.equal(objectKey({ metadata: { name: "a" } }), "a");
  assert.equal(objectKey({ metadata: { name: 7 } }), undefined);
  assert.equal(objectKey({}), undefined);
  assert.equal(objectKey(null), undefined);
});

Deno.test("Informer lists every page with its selectors, then watches from the list's version", async () => {
  const last = silentWatch();
  const { client, seen } = scriptedClient(
    [
      { items: [raw("x", "1"), raw("y", "2")], metadata: { continue: "c1", resourceVersion: "5" } },
      { items: [raw("z", "3")], metadata: { continue: "", resourceVersion: "7" } },
    ],
    [last.script],
  );
  const log: string[] = [];
  const informer = new Informer<Raw>(client, {
    resource: RESOURCES.services,
    namespace: "team a",
    labelSelector: "app=web",
    fieldSelector: "spec.type=LoadBalancer",
    pageSize: 2,
    watchTimeoutSeconds: [10, 12],
    narrow: (r) => r as Raw,
    onChange: (key) => log.push(key),
  });
  const stop = new AbortController();
  using _random = fixedRandom(0.999);
  const running = informer.run(stop.signal);
  await informer.whenSynced();
  assert.equal(informer.synced, true);
  await last.opened;
  const selectors = { labelSelector: "app=web", fieldSelector: "spec.type=LoadBalancer" };
  assert.deepEqual(seen.lists, [
    { ...selectors, limit: 2, continue: undefined },
    { ...selectors, limit: 2, continue: "c1" },
  ]);
  assert.deepEqual(seen.watches, [
    { ...selectors, resourceVersion: "7", allowWatchBookmarks: true, timeoutSeconds: 12 },
  ]);
  assert.deepEqual(new Set(seen.paths), new Set(["/api/v1/namespaces/team%20a/services"]));
  assert.deepEqual(seen.methods, ["GET", "GET"]);
  assert.deepEqual(log, ["x", "y", "z"]);
  assert.deepEqual([...informer.store.keys()], ["x", "y", "z"]);
  stop.abort();
  await running;
});

Deno.test("Informer draws the watch's server-side timeout from its range, 240-480 s by default", async () => {
  for (
    const [random, range, expected] of [[0, [10, 12], 10], [0.999, undefined, 480], [
      0,
      undefined,
      240,
    ]] as const
  ) {
    const last = silentWatch();
    const { client, seen } = scriptedClient(
      [{ items: [], metadata: { resourceVersion: "1" } }],
      [last.script],
    );
    const informer = newInformer(client, [], range ? { watchTimeoutSeconds: [...range] } : {});
    const stop = new AbortController();
    using _random = fixedRandom(random);
    const running = informer.run(stop.signal);
    await last.opened;
    assert.equal(seen.watches[0]?.timeoutSeconds, expected);
    assert.equal(seen.lists[0]?.limit, 500); // the default page size
    stop.abort();
    await running;
  }
});

Deno.test("Informer applies watch events: bookmarks move the version, deletes remove, repeats change nothing", async () => {
  const last = silentWatch();
  const { client, seen } = scriptedClient(
    [{ items: [raw("a", "1"), raw("b", "2")], metadata: { resourceVersion: "10" } }],
    [
      endingWatch(
        { type: "MODIFIED", object: raw("a", "1") }, // the version it has: no change
        { type: "MODIFIED", object: raw("a", "11", "a2") },
        { type: "BOOKMARK", object: { metadata: { resourceVersion: "12" } } },
        { type: "DELETED", object: raw("b", "13") },
        { type: "DELETED", object: raw("gone", "14") }, // never seen: no change
        { type: "DELETED", object: { metadata: {} } }, // no name: ignored
        { type: "ADDED", object: raw("c", "15") },
        { type: "MODIFIED", object: { metadata: { name: "d" }, spec: { v: "d1" } } }, // no version
      ),
      endingWatch({ type: "BOOKMARK", object: { metadata: { resourceVersion: "30" } } }),
      last.script,
    ],
  );
  const { log, informer, stop, running } = runInformer(client);
  await last.opened;
  assert.deepEqual(log, ["a=1", "b=2", "a=a2", "b=deleted", "c=15", "d=d1"]);
  assert.deepEqual(Object.fromEntries(informer.store), {
    a: raw("a", "11", "a2"),
    c: raw("c", "15"),
    d: { metadata: { name: "d" }, spec: { v: "d1" } },
  });
  // Each new watch resumes from the last version seen (the object without one keeps it); no
  // relist, no error.
  assert.deepEqual(seen.watches.map((q) => q.resourceVersion), ["10", "15", "30"]);
  assert.equal(seen.lists.length, 1);
  stop.abort();
  await running;
});

Deno.test("Informer backs off on a watch error, resumes from the last version, and resets the backoff after a good watch", async () => {
  const last = silentWatch();
  const { client, seen } = scriptedClient(
    [{ items: [raw("a", "1")], metadata: { resourceVersion: "10" } }],
    [
      endingWatch(
        { type: "ADDED", object: raw("b", "11") },
        { type: "ERROR", object: { kind: "Status" } }, // no code: a server error
      ),
      endingWatch({ type: "ADDED", object: raw("c", "12") }),
      endingWatch({
        type: "ERROR",
        object: { code: 429, reason: "TooManyRequests", message: "slow down" },
      }),
      last.script,
    ],
  );
  const errors: { error: unknown; delay: number; healthy: boolean; last: unknown }[] = [];
  const informer = newInformer(client, [], {
    // Without the reset the second delay would be 10 times the first.
    backoff: { initialMs: 20, factor: 10, maxMs: 10_000 },
    onError: (error, delay) =>
      errors.push({ error, delay, healthy: informer.healthy, last: informer.lastError }),
  });
  const stop = new AbortController();
  const running = informer.run(stop.signal);
  await last.opened;
  assert.deepEqual(seen.watches.map((q) => q.resourceVersion), ["10", "11", "12", "12"]);
  assert.equal(seen.lists.length, 1);
  assert.equal(errors.length, 2);
  const [first, second] = errors;
  assert.ok(first!.error instanceof ApiError && second!.error instanceof ApiError);
  assert.deepEqual([first!.error.status, first!.error.reason], [500, ""]);
  assert.match(
    first!.error.message,
    /^WATCH \/apis\/.*\/ipruleconfigs failed: 500 error: watch error$/,
  );
  assert.deepEqual([second!.error.status, second!.error.reason], [429, "TooManyRequests"]);
  assert.match(second!.error.message, /slow down$/);
  for (const e of errors) {
    assert.ok(e.delay >= 10 && e.delay <= 20, `retry after ${e.delay} ms`);
    assert.equal(e.healthy, false);
    assert.equal(e.last, e.error);
  }
  // The watch that opened after the errors made it healthy again.
  assert.equal(informer.healthy, true);
  assert.equal(informer.lastError, undefined);
  stop.abort();
  await running;
});

Deno.test("Informer retries a failed list with backoff and is synced only once a list succeeded", async () => {
  const last = silentWatch();
  const watchMayOpen = Promise.withResolvers<void>();
  let lists = 0;
  const failure = new ApiError("GET", "/x", 503, "ServiceUnavailable", "try later");
  const client = {
    request: () =>
      ++lists <= 2
        ? Promise.reject(failure)
        : Promise.resolve({ items: [raw("a", "1")], metadata: { resourceVersion: "3" } }),
    watch: async function* (_p: string, _q: unknown, signal: AbortSignal, onOpen?: () => void) {
      await watchMayOpen.promise; // the watch request is still on its way
      yield* last.script(signal, onOpen);
    },
  } as unknown as KubeClient;
  const states: unknown[] = [];
  const informer = newInformer(client, [], {
    backoff: { initialMs: 20, factor: 2, maxMs: 1000 },
    onError: (error, delay) => states.push([error, delay, informer.synced, informer.healthy]),
  });
  assert.equal(informer.healthy, false);
  const stop = new AbortController();
  const running = informer.run(stop.signal);
  await informer.whenSynced(stop.signal);
  const [first, second] = states as [unknown, number, boolean, boolean][];
  assert.deepEqual([first?.[0], first?.[2], first?.[3], second?.[0], second?.[2]], [
    failure,
    false,
    false,
    failure,
    false,
  ]);
  assert.ok(first![1] >= 10 && first![1] <= 20, `first retry after ${first![1]} ms`);
  assert.ok(second![1] >= 20 && second![1] <= 40, `second retry after ${second![1]} ms`);
  assert.equal(informer.synced, true);
  // Healthy once the list succeeded, before the watch opened.
  assert.equal(informer.healthy, true);
  assert.equal(informer.lastError, undefined);
  assert.equal(lists, 3);
  assert.deepEqual([...informer.store.keys()], ["a"]);
  watchMayOpen.resolve();
  await last.opened;
  stop.abort();
  await running;
});

Deno.test("Informer.whenSynced() resolves at once when synced or aborted, and on abort while waiting", async () => {
  const { client } = scriptedClient([{ items: [], metadata: { resourceVersion: "1" } }], [
    silentWatch().script,
  ]);
  const informer = newInformer(client, []);
  const aborted = new AbortController();
  aborted.abort();
  await informer.whenSynced(aborted.signal); // would hang: nothing runs the informer
  const later = new AbortController();
  const waiting = informer.whenSynced(later.signal);
  later.abort();
  await waiting;
  assert.equal(informer.synced, false);
  const stop = new AbortController();
  const running = informer.run(stop.signal);
  await informer.whenSynced();
  await informer.whenSynced(); // synced: at once
  stop.abort();
  await running;
});

Deno.test("Informer drops an object that no longer narrows and reports it", async () => {
  const last = silentWatch();
  const bad = { metadata: { name: "a", resourceVersion: "11" }, spec: { v: "bad" } };
  const { client } = scriptedClient(
    [{
      items: [raw("a", "1"), { metadata: { name: "b", resourceVersion: "2" } }],
      metadata: {
        resourceVersion: "10",
      },
    }],
    [endingWatch({ type: "MODIFIED", object: bad }), last.script],
  );
  const log: string[] = [];
  const invalid: unknown[] = [];
  const informer = newInformer(client, log, {
    narrow: (r) => {
      const obj = r as Raw;
      if (obj.spec?.v !== "1") throw new Error(`spec.v "${obj.spec?.v}" is not valid`);
      return obj;
    },
    onInvalid: (error, r) => invalid.push([String(error), r]),
  });
  const stop = new AbortController();
  const running = informer.run(stop.signal);
  await last.opened;
  // b never narrowed: reported, never stored, no change; a stops narrowing: reported, removed.
  assert.deepEqual(log, ["a=1", "a=deleted"]);
  assert.deepEqual(invalid, [
    ['Error: spec.v "undefined" is not valid', { metadata: { name: "b", resourceVersion: "2" } }],
    ['Error: spec.v "bad" is not valid', bad],
  ]);
  assert.equal(informer.store.size, 0);
  stop.abort();
  await running;
});

Deno.test("objectKey() ignores a namespace that is no string", () => {
  assert.equal(objectKey({ metadata: { name: "a", namespace: 5 } }), "a");
});

Deno.test("Informer.learn() ignores objects without a name or a string resourceVersion", () => {
  const { client } = scriptedClient([], []);
  const informer = newInformer(client, []);
  for (
    const obj of [
      {},
      { metadata: { name: "a" } },
      { metadata: { name: "b", resourceVersion: 5 } },
      { metadata: { resourceVersion: "1" } },
      null,
    ]
  ) {
    informer.learn(obj as unknown as Raw);
  }
  assert.equal(informer.store.size, 0);
});

Deno.test("Informer works without any callback and skips listed objects without a name", async () => {
  const last = silentWatch();
  const { client, seen } = scriptedClient(
    [
      { items: [raw("a", "1"), { metadata: {} }, raw("bad", "2", "x")] }, // no resourceVersion
      { items: [raw("b", "3")], metadata: { resourceVersion: "9" } },
    ],
    [
      endingWatch(
        { type: "DELETED", object: raw("a", "4") },
        { type: "ERROR", object: { code: 500 } },
      ),
      endingWatch({ type: "ERROR", object: { code: 410 } }),
      last.script,
    ],
  );
  const informer = new Informer<Raw>(client, {
    resource: RESOURCES.ipRuleConfigs,
    narrow: (r) => {
      if ((r as Raw).spec?.v === "x") throw new Error("invalid");
      return r as Raw;
    },
    backoff: { initialMs: 1, factor: 1, maxMs: 1 },
  });
  const stop = new AbortController();
  const running = informer.run(stop.signal);
  await last.opened;
  assert.deepEqual([...informer.store.keys()], ["b"]);
  // The first list had no version: the first watch started from "" (any).
  assert.deepEqual(seen.watches.map((q) => q.resourceVersion), ["", "4", "9"]);
  stop.abort();
  await running;
});

Deno.test("Informer waits the given backoff between watches that end at once", async () => {
  const twenty = Promise.withResolvers<void>();
  let watches = 0;
  const client = {
    request: () => Promise.resolve({ items: [], metadata: { resourceVersion: "1" } }),
    // deno-lint-ignore require-yield
    watch: async function* () {
      if (++watches === 20) twenty.resolve();
      await Promise.resolve();
    },
  } as unknown as KubeClient;
  // 1 ms between them: twenty watches come quickly (the default backoff would take minutes).
  const informer = newInformer(client, [], { backoff: { initialMs: 1, factor: 1, maxMs: 1 } });
  const stop = new AbortController();
  const running = informer.run(stop.signal);
  await twenty.promise;
  stop.abort();
  await running;
});

Deno.test("Informer reopens a watch that ended without events after a second at once", async () => {
  // Date.now() moves 1000 ms while each watch is open: not a quick end, so no backoff (a
  // backoff of a minute would hang the test).
  const realNow = Date.now;
  let now = realNow();
  Date.now = () => now;
  try {
    const last = silentWatch();
    // deno-lint-ignore require-yield
    const slow: WatchScript = async function* () {
      await Promise.resolve();
      now += 1000;
    };
    const { client, seen } = scriptedClient(
      [{ items: [], metadata: { resourceVersion: "1" } }],
      [slow, slow, last.script],
    );
    const informer = newInformer(client, []);
    const stop = new AbortController();
    const running = informer.run(stop.signal);
    await last.opened;
    assert.equal(seen.watches.length, 3);
    stop.abort();
    await running;
  } finally {
    Date.now = realNow;
  }
});

Deno.test("Informer skips a listed object without a name, and removes without an onChange", async () => {
  // A watch that never calls onOpen: only its events make the informer healthy.
  // deno-lint-ignore require-yield
  const quiet: WatchScript = async function* (signal) {
    await new Promise((r) => signal.addEventListener("abort", r, { once: true }));
  };
  const { client, seen } = scriptedClient(
    [{
      items: [raw("a", "1"), { metadata: { resourceVersion: "1" } }],
      metadata: { resourceVersion: "5" },
    }],
    [
      endingWatch(
        { type: "ADDED", object: { metadata: { resourceVersion: "5" } } }, // no name: skipped
        { type: "DELETED", object: raw("a", "6") },
      ),
      quiet,
    ],
  );
  const informer = new Informer<Raw>(client, {
    resource: RESOURCES.ipRuleConfigs,
    narrow: (r) => r as Raw,
  });
  const stop = new AbortController();
  const running = informer.run(stop.signal);
  await informer.whenSynced();
  assert.deepEqual([...informer.store.keys()], ["a"]);
  while (seen.watches.length < 2) await new Promise((r) => setTimeout(r, 1));
  assert.equal(informer.store.size, 0);
  assert.equal(informer.lastError, undefined);
  assert.equal(informer.healthy, true);
  assert.deepEqual(seen.watches.map((q) => q.resourceVersion), ["5", "6"]);
  stop.abort();
  await running;
});

Deno.test("Informer leaves no timer behind: not of a finished watch, not once stopped", async () => {
  using timers = trackTimers();
  const last = silentWatch();
  const { client } = scriptedClient(
    [{ items: [], metadata: { resourceVersion: "1" } }],
    [endingWatch({ type: "ADDED", object: raw("a", "2") }), last.script],
  );
  const informer = newInformer(client, []);
  const stop = new AbortController();
  const running = informer.run(stop.signal);
  await last.opened;
  assert.equal(timers.live(), 1, "the open watch's idle timer only");
  stop.abort();
  await running;
  assert.equal(timers.live(), 0);
});
