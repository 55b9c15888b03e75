/** ClusterPlan.buildInSlices: the resync's plan, built with pauses between slices. */
import assert from "node:assert/strict";
import { API_VERSION, type IPRule } from "../api/types.ts";
import { service } from "../../tests/support/config_harness.ts";
import { ClusterPlan } from "./plan.ts";

const RULES: IPRule[] = [
  { cidrs: ["192.168.0.0/16"], table: 100 },
  { cidrs: ["192.168.1.0/24"], table: 200 },
].map((spec, i) => ({
  apiVersion: API_VERSION,
  kind: "IPRule",
  metadata: { name: `rule-${i}`, generation: 1 },
  spec: { priority: 1000, ...spec },
}));

/** 7 Services, two of them sharing a ClusterIP (one source, two claimants), one dual-stack. */
const SERVICES = [
  ...Array.from(
    { length: 5 },
    (_, i) => service(`s${i}`, `192.168.${i % 2}.${10 + i}`, `10.96.0.${i + 1}`),
  ),
  service("shared", "192.168.1.99", "10.96.0.1"),
  service("dual", ["192.168.1.7", "192.168.0.8"], ["10.96.0.9", "fd00:96::9"]),
];

/** Everything a plan decides, as plain data. */
function decisions(plan: ClusterPlan) {
  return {
    configs: [...plan.configNames()].sort().map((name) => [name, plan.desired(name)]),
    reports: RULES.map((rule) => plan.report(rule)),
    events: [...plan.serviceKeysWithEvents()].sort().map((key) => plan.serviceEvents(key)),
  };
}

Deno.test("ClusterPlan.buildInSlices decides what build decides, pausing after every slice of each pass", async () => {
  const whole = ClusterPlan.build(SERVICES, RULES, () => undefined);
  const sources = [...whole.configNames()].length;
  assert.equal(sources, 6); // two share 10.96.0.1; the dual-stack one has no IPv6 LB IP
  for (const slice of [1, 2, 3, 100]) {
    let pauses = 0;
    const sliced = await ClusterPlan.buildInSlices(SERVICES, RULES, () => undefined, slice, () => {
      pauses++;
      return Promise.resolve();
    });
    assert.deepEqual(decisions(sliced), decisions(whole), `slices of ${slice}`);
    // Three passes over the Services, the sources and the Services again, each in slices.
    const slices = (n: number) => Math.floor(n / slice);
    assert.equal(pauses, slices(SERVICES.length) + slices(sources) + slices(SERVICES.length));
  }
});

Deno.test("ClusterPlan.buildInSlices reads the Services as they are when each slice runs", async () => {
  const services = new Map(SERVICES.map((s) => [s.name, s]));
  const plan = await ClusterPlan.buildInSlices(services.values(), RULES, () => undefined, 1, () => {
    // While the first Service is planned, the last one is deleted and another added.
    if (services.has("dual")) {
      services.delete("dual");
      services.set("late", service("late", "192.168.1.70", "10.96.0.70"));
    }
    return Promise.resolve();
  });
  assert.deepEqual(
    decisions(plan),
    decisions(ClusterPlan.build(services.values(), RULES, () => undefined)),
  );
  assert.equal(plan.desired("iprc-10-96-0-9"), undefined);
  assert.equal(plan.desired("iprc-10-96-0-70")?.table, 200);
});
