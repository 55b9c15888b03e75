import assert from "node:assert/strict";
import {
  DEFAULT_JITTER,
  jitteredInterval,
  URGENT_FLOOR_MS,
  writeDueAt,
  WritePacer,
} from "./write_pacer.ts";

const INTERVAL = 10_000;

Deno.test("WritePacer: the first write goes at once, urgent or not", () => {
  const pacer = new WritePacer({ intervalMs: INTERVAL });
  assert.equal(pacer.dueAt(500, false), 500);
  assert.equal(pacer.dueAt(500, true), 500);
});

Deno.test("WritePacer: an ordinary change waits for the end of the last write's window", () => {
  const pacer = new WritePacer({ intervalMs: INTERVAL }, () => 0.5); // no jitter drawn
  pacer.wrote(1000);
  assert.equal(pacer.dueAt(1001, false), 11_000, "right after a write");
  assert.equal(pacer.dueAt(9000, false), 11_000, "later in the window: the same end");
  assert.equal(pacer.dueAt(11_000, false), 11_000);
  assert.equal(pacer.dueAt(50_000, false), 50_000, "the window is over: at once");
});

Deno.test("WritePacer: the trailing change of a burst is due once, at the window's end", () => {
  const pacer = new WritePacer({ intervalMs: INTERVAL }, () => 0.5);
  // A burst: the first change is written at once (leading)...
  assert.equal(pacer.dueAt(0, false), 0);
  pacer.wrote(0);
  // ...every later one is due at the same time, when the last state is written (trailing).
  const dues = [1, 50, 400, 3000, 9999].map((t) => pacer.dueAt(t, false));
  assert.deepEqual(new Set(dues), new Set([INTERVAL]));
  pacer.wrote(INTERVAL);
  assert.equal(pacer.dueAt(INTERVAL + 1, false), 2 * INTERVAL, "the next window");
});

Deno.test("WritePacer: urgent changes wait only the floor after the last write", () => {
  const pacer = new WritePacer({ intervalMs: INTERVAL }, () => 0.5);
  pacer.wrote(1000);
  assert.equal(pacer.dueAt(1200, true), 1000 + URGENT_FLOOR_MS);
  assert.equal(pacer.dueAt(5000, true), 5000, "the floor has passed: at once");
  // An urgent write opens a window too: ordinary changes wait a full interval after it.
  pacer.wrote(5000);
  assert.equal(pacer.dueAt(5001, false), 15_000);
  assert.equal(pacer.dueAt(5001, true), 6000);
});

Deno.test("WritePacer: the floor is never longer than the interval", () => {
  assert.equal(new WritePacer({ intervalMs: 400 }).floorMs, 400);
  assert.equal(new WritePacer({ intervalMs: INTERVAL }).floorMs, URGENT_FLOOR_MS);
  assert.equal(new WritePacer({ intervalMs: INTERVAL, floorMs: 250 }).floorMs, 250);
  const unpaced = new WritePacer({ intervalMs: 0 });
  unpaced.wrote(7);
  assert.deepEqual([unpaced.dueAt(7, false), unpaced.dueAt(7, true)], [7, 7]);
});

Deno.test("jitteredInterval() stays within ±10 % and spreads over the whole range", () => {
  assert.equal(DEFAULT_JITTER, 0.1);
  assert.equal(jitteredInterval(INTERVAL, 0.1, 0), 9000);
  assert.equal(jitteredInterval(INTERVAL, 0.1, 0.5), INTERVAL);
  assert.ok(jitteredInterval(INTERVAL, 0.1, 0.999_999) < 11_000);
  // Windows drawn by many writers: each within bounds, together covering the range.
  const ends: number[] = [];
  for (let i = 0; i < 2000; i++) {
    const pacer = new WritePacer({ intervalMs: INTERVAL });
    pacer.wrote(0);
    ends.push(pacer.dueAt(1, false));
  }
  assert.ok(ends.every((e) => e >= 9000 && e < 11_000), "within ±10 %");
  assert.ok(Math.min(...ends) < 9200 && Math.max(...ends) > 10_800, "spread, not in step");
});

Deno.test("writeDueAt() is the pure decision behind the pacer", () => {
  const state = { lastWriteAt: 0, windowEnd: 10_000 };
  assert.equal(writeDueAt({ lastWriteAt: undefined, windowEnd: undefined }, 3, false, 1000), 3);
  assert.equal(writeDueAt(state, 10, false, 1000), 10_000);
  assert.equal(writeDueAt(state, 10, true, 1000), 1000);
  assert.equal(writeDueAt(state, 20_000, false, 1000), 20_000);
});
