import assert from "node:assert/strict";
import {
  type Rule,
  type RuleChange,
  type RuleEvent,
  RuleSocket,
  RuleSubscription,
} from "../../ffi/mod.ts";
import { Netns } from "../support/netns.ts";
import { hostRules } from "../support/rules.ts";

const PROTOCOL = 99;
/** Bounds a wait for an event so a missing one fails the test instead of hanging it. */
const EVENT_TIMEOUT_MS = 10_000;

const rules = (count: number) =>
  hostRules("10.40.0.0", count, () => ({ table: 1000, priority: 2000, protocol: PROTOCOL }));

/** Reads events until `match` accepts one; fails after EVENT_TIMEOUT_MS. */
async function waitFor(
  events: AsyncIterator<RuleEvent>,
  what: string,
  match: (event: RuleEvent) => boolean,
): Promise<RuleEvent> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`No ${what} event within ${EVENT_TIMEOUT_MS} ms`)),
      EVENT_TIMEOUT_MS,
    );
  });
  try {
    for (;;) {
      const next = await Promise.race([events.next(), timeout]);
      if (next.done) throw new Error(`Subscription ended before a ${what} event`);
      if (match(next.value)) return next.value;
    }
  } finally {
    clearTimeout(timer);
  }
}

function isRule(event: RuleEvent, type: "added" | "deleted", src: string): boolean {
  return event.type === type && event.rule.src === src && event.rule.protocol === PROTOCOL;
}

Deno.test("RuleSubscription reports an external ip rule del", async () => {
  await using ns = await Netns.create();
  const [socket, subscription] = ns.enter(() =>
    [RuleSocket.open(), RuleSubscription.open()] as const
  );
  using _socket = socket;
  await using _subscription = subscription;
  const [rule] = rules(1) as [Rule];
  await socket.addRules([rule]);
  const events = subscription[Symbol.asyncIterator]();
  const added = await waitFor(events, "added", (e) => isRule(e, "added", rule.src)) as RuleChange;
  assert.equal(added.rule.table, 1000);
  assert.equal(added.portId, socket.portId, "our own change carries our port id");
  await ns.ip(["rule", "del", "from", rule.src, "lookup", "1000", "priority", "2000"]);
  const deleted = await waitFor(events, "deleted", (e) => isRule(e, "deleted", rule.src));
  const seen = (deleted as RuleChange).rule;
  assert.deepEqual([seen.family, seen.srcLen, seen.priority, seen.plain], [4, 32, 2000, true]);
  assert.notEqual((deleted as RuleChange).portId, socket.portId);
});

Deno.test("RuleSubscription signals resync after its receive buffer overflows, then goes on", async () => {
  await using ns = await Netns.create();
  // The smallest receive buffer the kernel allows: a burst of 2,000 events cannot fit.
  const [socket, subscription] = ns.enter(() =>
    [RuleSocket.open(), RuleSubscription.open({ receiveBufferSize: 1 })] as const
  );
  using _socket = socket;
  await using _subscription = subscription;
  const burst = rules(2000);
  const added = await socket.addRules(burst);
  assert.ok(added.every((r) => r.error === undefined));
  const events = subscription[Symbol.asyncIterator]();
  const resync = await waitFor(events, "resync", (e) => e.type === "resync");
  assert.equal(resync.type === "resync" && resync.reason, "overflow");
  assert.equal(resync.type === "resync" && (resync.error as { code?: string }).code, "ENOBUFS");
  // Still subscribed: a later change arrives.
  const last = burst.at(-1)!;
  await ns.ip(["rule", "del", "from", last.src, "lookup", "1000", "priority", "2000"]);
  await waitFor(events, "deleted", (e) => isRule(e, "deleted", last.src));
});

Deno.test("RuleSubscription.close() ends a pending iteration", async () => {
  await using ns = await Netns.create();
  const subscription = ns.enter(() => RuleSubscription.open());
  const events = subscription[Symbol.asyncIterator]();
  const pending = events.next();
  await subscription.close();
  assert.deepEqual(await pending, { done: true, value: undefined });
  await subscription.close();
});

Deno.test("aborting the subscription ends the process promptly", async () => {
  await using ns = await Netns.create();
  const child = new URL("./children/subscribe_until_term.ts", import.meta.url).pathname;
  const [cmd, ...args] = ns.exec([Deno.execPath(), "run", "-A", child]);
  const process = new Deno.Command(cmd!, { args, stdout: "piped", stderr: "piped" }).spawn();
  const reader = process.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let output = "";
  while (!output.includes("ready\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    output += value;
  }
  assert.match(output, /ready/);
  process.kill("SIGTERM");
  let timer: ReturnType<typeof setTimeout> | undefined;
  const exited = await Promise.race([
    process.status.then((status) => status.code),
    new Promise<"hung">((resolve) => timer = setTimeout(() => resolve("hung"), EVENT_TIMEOUT_MS)),
  ]);
  clearTimeout(timer);
  if (exited === "hung") process.kill("SIGKILL");
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    output += value;
  }
  const stderr = await new Response(process.stderr).text();
  await process.status;
  assert.equal(exited, 0, `Child did not exit by itself after SIGTERM: ${stderr}`);
  assert.match(output, /closed after 0 events/);
});
