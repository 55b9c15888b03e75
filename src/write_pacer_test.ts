import assert from "node:assert/strict";
import {
  DEFAULT_JITTER,
  jitteredInterval,
  URGENT_FLOOR_MS,
  writeDueAt,
  WritePacer,
} from "./write_pacer.ts";

const INTERVAL = 10_000;
/** A random source at the middle of the range: intervals of exactly INTERVAL. */
const MIDDLE = () => 0.5;

Deno.test("WritePacer: before the first write, an urgent change goes at once, an ordinary one waits", () => {
  const pacer = new WritePacer({ intervalMs: INTERVAL }, MIDDLE);
  assert.equal(pacer.dueAt(500, true), 500);
  assert.equal(pacer.dueAt(500, false), 10_500);
});

Deno.test("WritePacer: an ordinary change is written one interval after it appeared", () => {
  const pacer = new WritePacer({ intervalMs: INTERVAL }, MIDDLE);
  pacer.wrote(0);
  pacer.changed(50_000); // long after the last write: still no write at once
  assert.equal(pacer.dueAt(50_001, false), 60_000);
  assert.equal(pacer.dueAt(59_000, false), 60_000, "asked again later: the same time");
  assert.equal(pacer.dueAt(70_000, false), 70_000, "past due: at once");
});

Deno.test("WritePacer: ordinary writes are at least one interval apart", () => {
  const pacer = new WritePacer({ intervalMs: INTERVAL }, MIDDLE);
  pacer.wrote(1000);
  pacer.changed(1001);
  assert.equal(pacer.dueAt(1001, false), 11_001);
  // An urgent write at 5000 opens a new window: the pending count change waits for its end.
  pacer.wrote(5000);
  pacer.changed(5001);
  assert.equal(pacer.dueAt(5001, false), 15_001);
});

Deno.test("WritePacer: a burst of changes is written once, its last state at the end (trailing)", () => {
  const pacer = new WritePacer({ intervalMs: INTERVAL }, MIDDLE);
  pacer.wrote(0);
  // The burst's changes arrive from 30 s on; each asks when it may be written.
  const dues = [30_000, 30_050, 30_400, 33_000, 39_999].map((t) => pacer.dueAt(t, false));
  assert.deepEqual(new Set(dues), new Set([40_000]), "one time for all: the first's + interval");
  pacer.wrote(40_000);
  pacer.changed(40_500);
  assert.equal(pacer.dueAt(40_500, false), 50_500, "a later change: the next window");
});

Deno.test("WritePacer: a change that is undone before its time is not pending any more", () => {
  const pacer = new WritePacer({ intervalMs: INTERVAL }, MIDDLE);
  pacer.wrote(0);
  pacer.changed(20_000);
  pacer.settled();
  pacer.changed(25_000);
  assert.equal(pacer.dueAt(25_000, false), 35_000, "counted from the new change");
});

Deno.test("WritePacer: urgent changes wait only the floor after the last write", () => {
  const pacer = new WritePacer({ intervalMs: INTERVAL }, MIDDLE);
  pacer.wrote(1000);
  assert.equal(pacer.dueAt(1200, true), 1000 + URGENT_FLOOR_MS);
  assert.equal(pacer.dueAt(5000, true), 5000, "the floor has passed: at once");
  // Ordinary changes pending since before do not hold an urgent one back.
  pacer.wrote(20_000);
  pacer.changed(20_001);
  assert.equal(pacer.dueAt(20_100, false), 30_001);
  assert.equal(pacer.dueAt(20_100, true), 21_000);
});

Deno.test("WritePacer: the floor is never longer than the interval", () => {
  assert.equal(new WritePacer({ intervalMs: 400 }).floorMs, 400);
  assert.equal(new WritePacer({ intervalMs: INTERVAL }).floorMs, URGENT_FLOOR_MS);
  assert.equal(new WritePacer({ intervalMs: INTERVAL, floorMs: 250 }).floorMs, 250);
  const unpaced = new WritePacer({ intervalMs: 0 });
  assert.deepEqual([unpaced.dueAt(7, false), unpaced.dueAt(7, true)], [7, 7]);
  unpaced.wrote(7);
  assert.deepEqual([unpaced.dueAt(7, false), unpaced.dueAt(7, true)], [7, 7]);
});

Deno.test("jitteredInterval() stays within ±10 % and spreads over the whole range", () => {
  assert.equal(DEFAULT_JITTER, 0.1);
  assert.equal(jitteredInterval(INTERVAL, 0.1, 0), 9000);
  assert.equal(jitteredInterval(INTERVAL, 0.1, 0.5), INTERVAL);
  assert.ok(jitteredInterval(INTERVAL, 0.1, 0.999_999) < 11_000);
  // Many writers, each its own window after the same change: within bounds, not in step.
  const dues: number[] = [];
  for (let i = 0; i < 2000; i++) {
    const pacer = new WritePacer({ intervalMs: INTERVAL });
    pacer.wrote(0);
    dues.push(pacer.dueAt(0, false));
  }
  assert.ok(dues.every((e) => e >= 9000 && e < 11_000), "within ±10 %");
  assert.ok(Math.min(...dues) < 9200 && Math.max(...dues) > 10_800, "spread over the range");
  // Each window draws anew.
  const pacer = new WritePacer({ intervalMs: INTERVAL });
  const intervals = new Set<number>();
  for (let t = 0; t < 10; t++) {
    pacer.wrote(t * INTERVAL * 2);
    intervals.add(pacer.state.intervalMs);
  }
  assert.ok(intervals.size > 1);
});

Deno.test("writeDueAt() is the pure decision behind the pacer", () => {
  const state = { lastWriteAt: 0, pendingSince: 4000, intervalMs: 10_000 };
  const fresh = { lastWriteAt: undefined, pendingSince: 3, intervalMs: 10_000 };
  assert.equal(writeDueAt(fresh, 3, true, 1000), 3);
  assert.equal(writeDueAt(fresh, 5, false, 1000), 10_003);
  assert.equal(writeDueAt(state, 4000, false, 1000), 14_000);
  assert.equal(writeDueAt(state, 4000, true, 1000), 4000);
  assert.equal(writeDueAt({ ...state, pendingSince: 100 }, 200, true, 1000), 1000);
  assert.equal(writeDueAt(state, 20_000, false, 1000), 20_000);
});

Deno.test("writeDueAt(): a change pending since before the last write still waits an interval after that write", () => {
  // An urgent write went out while counts were pending: they wait a whole interval after it.
  const state = { lastWriteAt: 5000, pendingSince: 1000, intervalMs: 10_000 };
  assert.equal(writeDueAt(state, 6000, false, 1000), 15_000);
});
