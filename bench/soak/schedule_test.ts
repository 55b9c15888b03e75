import assert from "node:assert/strict";
import { Random } from "./random.ts";
import { type Fault, FAULT_KINDS, KINDS, scheduleFaults } from "./schedule.ts";
import { initialWorld, randomChange } from "./world.ts";

const TWO_MINUTES = 120_000;

function schedule(seed: number, durationMs = TWO_MINUTES): Fault[] {
  return scheduleFaults(new Random(seed), { durationMs, nodes: 3 });
}

Deno.test("scheduleFaults() is the same for the same seed and differs for another", () => {
  assert.deepEqual(schedule(7), schedule(7));
  assert.notDeepEqual(schedule(7), schedule(8));
});

Deno.test("scheduleFaults() puts every kind in a two-minute run, each ending before the end", () => {
  for (const seed of [1, 2, 3, 42, 1234]) {
    const faults = schedule(seed);
    assert.deepEqual(new Set(faults.map((f) => f.kind)), new Set(KINDS), `seed ${seed}`);
    for (const f of faults) {
      assert.ok(f.at >= 5_000, `#${f.id} starts in the warm-up`);
      assert.ok(f.at + f.downMs <= TWO_MINUTES, `#${f.id} ends after the run`);
      const [min, max] = FAULT_KINDS[f.kind].downMs;
      assert.ok(f.downMs >= min && f.downMs <= max, `#${f.id} down ${f.downMs}`);
      assert.equal(f.node !== undefined, FAULT_KINDS[f.kind].perNode);
    }
  }
});

Deno.test("scheduleFaults() never overlaps two faults of one kind on one target", () => {
  const faults = schedule(99, 900_000);
  for (const a of faults) {
    for (const b of faults) {
      if (a.id >= b.id || a.kind !== b.kind || a.node !== b.node) continue;
      assert.ok(b.at >= a.at + a.downMs, `#${a.id} and #${b.id} overlap`);
    }
  }
});

Deno.test("scheduleFaults() lets different kinds overlap in a 15-minute run", () => {
  const faults = schedule(5, 900_000);
  const overlapping = faults.some((a) =>
    faults.some((b) => a.kind !== b.kind && b.at > a.at && b.at < a.at + a.downMs)
  );
  assert.ok(overlapping);
  assert.ok(faults.length > 60, `only ${faults.length} faults in 15 minutes`);
});

Deno.test("randomChange() yields the same sequence of models for the same seed", () => {
  const run = (seed: number) => {
    const world = initialWorld();
    const random = new Random(seed);
    const changes = Array.from({ length: 300 }, () => randomChange(world, random));
    return { changes, world };
  };
  assert.deepEqual(run(11), run(11));
  const { changes, world } = run(11);
  const kinds = new Set(changes.map((c) => `${c.kind} ${c.what.split(" ")[0]}`));
  for (const k of ["Service created", "Service deleted", "Service LB", "IPRule table"]) {
    assert.ok(kinds.has(k), `no "${k}" in 300 changes: ${[...kinds].join(", ")}`);
  }
  const families = new Set(world.services.filter((s) => s.exists).map((s) => s.family));
  assert.deepEqual(families, new Set(["IPv4", "IPv6", "dual"]));
});

Deno.test("Random.split() streams do not depend on what the other draws", () => {
  const a = new Random(3);
  const first = a.split();
  const second = a.split();
  const b = new Random(3);
  const firstB = b.split();
  for (let i = 0; i < 50; i++) firstB.float(); // the first stream draws more this time
  const secondB = b.split();
  assert.equal(second.int(0, 1e9), secondB.int(0, 1e9));
  assert.notEqual(first.int(0, 1e9), second.int(0, 1e9));
});

Deno.test("scheduleFaults() with rate 3 schedules about three times as many faults", () => {
  const count = (rate: number) =>
    scheduleFaults(new Random(9), { durationMs: 1_800_000, nodes: 3, rate }).length;
  const ratio = count(3) / count(1);
  assert.ok(ratio > 2 && ratio < 4, `ratio ${ratio}`);
});
