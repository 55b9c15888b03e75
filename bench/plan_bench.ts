/**
 * Planning benchmark: 10,000 LoadBalancer Services (half dual-stack) against 50 IPRules with
 * overlapping CIDRs: planned from scratch, the resync (from scratch against existing configs),
 * and one Service changed in the kept plan (issue 17: re-plans only the keys it affects); the
 * controller's resync through its reconciler, in slices and whole: how long it holds the event
 * loop at most (every event waits that long). Prints medians. Targets (issue 2): < 200 ms from scratch, < 20 ms for one change.
 */
import { API_VERSION, type IPRule, type IPRuleConfig, type ServiceInfo } from "../src/api/types.ts";
import { ClusterPlan, diffConfig, planConfigs } from "../src/controller/plan.ts";
import { RESYNC_KEY, RESYNC_SLICE } from "../src/controller/config_reconciler.ts";
import { setup } from "../tests/support/config_harness.ts";

const SERVICES = 10_000;
const RUNS = Number(Deno.env.get("RUNS") ?? 15);

function ipRules(): IPRule[] {
  const rules: IPRule[] = [];
  for (let i = 0; i < 50; i++) {
    // 10 wide rules (/16, /48) overlapped by 40 narrow ones (/24 and /20, /64): many
    // LB IPs match two or three IPRules, so the tie-break and conflict paths run.
    const a = i % 10;
    const cidrs = i < 10
      ? [`10.${a}.0.0/16`, `fd00:${a}::/48`]
      : [`10.${a}.${i}.0/24`, `10.${a}.${(i % 4) * 64}.0/20`, `fd00:${a}:${i}::/64`];
    rules.push({
      apiVersion: API_VERSION,
      kind: "IPRule",
      metadata: { name: `rule-${String(i).padStart(2, "0")}`, generation: 1 },
      spec: { cidrs, table: 100 + i, priority: 1000 + (i % 7) },
    });
  }
  return rules;
}

/** Service i: LB IPs in the CIDRs above (every one matches at least one IPRule). */
function service(i: number, third = 10 + (i % 40)): ServiceInfo {
  const dual = i % 2 === 0;
  const a = third % 10;
  const host = 1 + (i >> 6) % 250;
  return {
    namespace: `ns-${i % 20}`,
    name: `svc-${i}`,
    labels: { app: `a${i % 3}` },
    type: "LoadBalancer",
    clusterIPs: dual
      ? [`10.96.${i >> 8}.${i & 255}`, `fd00:96::${i.toString(16)}`]
      : [`10.96.${i >> 8}.${i & 255}`],
    ingressIPs: dual
      ? [`10.${a}.${third}.${host}`, `fd00:${a}:${third}::${host.toString(16)}`]
      : [`10.${a}.${third}.${host}`],
    hostnameOnlyIngress: 0,
  };
}

function median(samples: number[]): number {
  const s = [...samples].sort((x, y) => x - y);
  return s[Math.floor(s.length / 2)]!;
}

function time(fn: () => void): number[] {
  const samples: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    fn();
    samples.push(performance.now() - t0);
  }
  return samples;
}

const rules = ipRules();
const services = Array.from({ length: SERVICES }, (_, i) => service(i));
const options = { now: Date.now(), graceMs: 300_000 };

const first = planConfigs({ services, ipRules: rules, configs: [] }, options);
const configs: IPRuleConfig[] = first.changes.flatMap((c) =>
  c.op === "create"
    ? [{ ...c.config, metadata: { ...c.config.metadata, resourceVersion: "1" } }]
    : []
);
const existing = new Map(configs.map((c) => [c.metadata.name, c]));

const scratch = time(() => planConfigs({ services, ipRules: rules, configs: [] }, options));
// The resync: a plan from scratch against the configs that exist (no write due).
const resync = time(() => planConfigs({ services, ipRules: rules, configs }, options));
// The controller keeps one plan across events: a change re-plans the keys it affects.
const plan = ClusterPlan.build(services, rules, () => undefined);
let flip = false;
let oneChanges = 0;
const one = time(() => {
  // Alternate between the original Service and one whose LB IP moved from a narrow IPRule
  // to a wide one, so each run sees a fresh change against the same existing configs.
  flip = !flip;
  const svc = flip ? service(4242, 200) : service(4242);
  const affected = plan.setService(`${svc.namespace}/${svc.name}`, svc);
  let changes = 0;
  for (const name of affected.configs) {
    if (diffConfig(name, plan.desired(name), existing.get(name), options).change) changes++;
  }
  for (const name of affected.ipRules) {
    const rule = rules.find((r) => r.metadata.name === name);
    if (rule) plan.report(rule);
  }
  if (flip) oneChanges = changes;
});

const conflicts = first.ipRules.reduce((n, r) => n + r.conflictCount, 0);
console.log(
  `plan: ${SERVICES} Services (${SERVICES / 2} dual-stack), ${rules.length} IPRules, ` +
    `${configs.length} configs, ${conflicts} conflicts; median of ${RUNS} runs`,
);
console.log(`  from scratch:         ${median(scratch).toFixed(1)} ms  (target < 200 ms)`);
console.log(
  `  resync (no write due): ${median(resync).toFixed(1)} ms  (full plan, existing configs)`,
);
console.log(
  `  one Service changed:  ${
    median(one).toFixed(3)
  } ms  (target < 20 ms; ${oneChanges} config updates; incremental plan)`,
);

/**
 * The controller's resync through its reconciler (configs in place, nothing to write): its whole
 * time and the longest stretch it holds the event loop, planning in slices of `slice` Services.
 */
async function resyncHold(slice: number): Promise<{ total: number; hold: number }[]> {
  let resumed = 0;
  let hold = 0;
  const t = setup({
    resyncSlice: slice,
    resyncPause: async () => {
      hold = Math.max(hold, performance.now() - resumed);
      await new Promise((r) => setTimeout(r, 0));
      resumed = performance.now();
    },
  });
  for (const { metadata, spec } of rules) {
    t.ipRules.put({ metadata: { ...metadata }, spec: { ...spec } });
  }
  t.caches.ipRules.sync();
  for (const svc of services) t.services.set(`${svc.namespace}/${svc.name}`, svc);
  await t.start(); // writes every config
  const samples: { total: number; hold: number }[] = [];
  for (let i = 0; i < Math.ceil(RUNS / 3); i++) {
    hold = 0;
    const start = resumed = performance.now();
    await t.reconciler.reconcile(RESYNC_KEY, "bench");
    const end = performance.now();
    samples.push({ total: end - start, hold: Math.max(hold, end - resumed) });
  }
  return samples;
}
const sliced = await resyncHold(RESYNC_SLICE);
const whole = await resyncHold(Infinity);
const medianOf = (xs: { total: number; hold: number }[], k: "total" | "hold") =>
  median(xs.map((x) => x[k])).toFixed(1);
console.log(
  `  controller resync:    ${medianOf(sliced, "total")} ms, holding the event loop at most ` +
    `${medianOf(sliced, "hold")} ms (slices of ${RESYNC_SLICE} Services; whole: ` +
    `${medianOf(whole, "total")} ms, all of it held)`,
);
