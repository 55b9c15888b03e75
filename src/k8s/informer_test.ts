import assert from "node:assert/strict";
import { ApiError, type KubeClient } from "./client.ts";
import { Informer, WATCH_SILENCE_MS, watchIdleTimeoutMs } from "./informer.ts";
import { RESOURCES } from "./resources.ts";

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
type WatchScript = (signal: AbortSignal) => AsyncGenerator<Event>;

function raw(name: string, rv: string, v = rv): Raw {
  return { metadata: { name, resourceVersion: rv }, spec: { v } };
}

/**
 * A KubeClient whose lists answer the given pages in turn and whose watches run the given
 * scripts in turn (the last one again when they run out); it records the queries.
 */
function scriptedClient(lists: object[], watches: WatchScript[]) {
  const seen = { lists: [] as Record<string, unknown>[], watches: [] as Record<string, unknown>[] };
  const client = {
    request: (_method: string, _path: string, options: { query: Record<string, unknown> }) => {
      seen.lists.push(options.query);
      const page = lists[Math.min(seen.lists.length, lists.length) - 1];
      return Promise.resolve(structuredClone(page));
    },
    watch: (_path: string, query: Record<string, unknown>, signal: AbortSignal) => {
      seen.watches.push(query);
      return watches[Math.min(seen.watches.length, watches.length) - 1]!(signal);
    },
  };
  return { client: client as unknown as KubeClient, seen };
}

/** A watch that stays open, silent, until it is aborted; `opened` resolves when it opens. */
function silentWatch(): { script: WatchScript; opened: Promise<void> } {
  const opened = Promise.withResolvers<void>();
  // deno-lint-ignore require-yield
  const script = async function* (signal: AbortSignal) {
    opened.resolve();
    await new Promise((r) => signal.addEventListener("abort", r, { once: true }));
  };
  return { script, opened: opened.promise };
}

function newInformer(client: KubeClient, log: string[]) {
  return new Informer<Raw>(client, {
    resource: RESOURCES.ipRuleConfigs,
    narrow: (r) => r as Raw,
    onChange: (key, obj) => log.push(`${key}=${obj?.spec?.v ?? "deleted"}`),
    onError: (err, delayMs) =>
      log.push(`error ${err instanceof ApiError ? err.status : String(err)} ${delayMs}`),
    backoff: { initialMs: 60_000, factor: 2, maxMs: 60_000 }, // a backoff would hang the test
  });
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
  const log: string[] = [];
  const informer = newInformer(client, log);
  const stop = new AbortController();
  const running = informer.run(stop.signal);
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

Deno.test("Informer reports a watch dropped by its watchdog as silent, not as aborted", async () => {
  const errors: unknown[] = [];
  const client = {
    request: () => Promise.resolve({ items: [], metadata: { resourceVersion: "1" } }),
    // A stream that never delivers: its body read fails with the abort, as fetch's does.
    // deno-lint-ignore require-yield
    watch: async function* (_path: string, _query: unknown, signal: AbortSignal) {
      await new Promise((_, reject) =>
        signal.addEventListener("abort", () => reject(signal.reason), { once: true })
      );
    },
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
  assert.match(String(errors[0]), /Watch of ".*ipruleconfigs" was silent for 30 ms/);
  assert.equal(informer.healthy, false);
});
