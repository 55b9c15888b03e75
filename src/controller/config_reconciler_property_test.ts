/**
 * Property test of the incremental planning: seeded random sequences of Service, IPRule,
 * Namespace, Agent and IPRuleConfig changes (and time passing) go through the reconciler as the
 * controller runs it; after every change the plan it kept must equal a plan of the caches from
 * scratch, and at the end a resync must write nothing and the API objects must be what a full
 * plan wants. Resyncs come now and then and plan in slices of one Service, with Service, IPRule
 * and Namespace changes coming between the slices. The configs include the original operator's (adopted: moved off its marks) and
 * foreign ones (never touched). A failure names the seed and the changes so far (`PLAN_SEED=n`
 * replays one).
 */
import assert from "node:assert/strict";
import { GRACE, NS, service, setup } from "../../tests/support/config_harness.ts";
import { Random } from "../../bench/soak/random.ts";
import { narrowIPRuleConfig } from "../api/narrow.ts";
import { type IPRuleSpec, isManagedConfig, type ServiceInfo } from "../api/types.ts";
import { configPolicy } from "../drain.ts";
import { configName, parseIP } from "../ip.ts";
import { apiTime } from "../k8s/time.ts";
import { hasOriginalMarks } from "./config_migration.ts";
import { RESYNC_KEY } from "./config_reconciler.ts";
import { ipRuleStatus, sameIPRuleStatus } from "./iprule_status.ts";
import { planConfigs } from "./plan.ts";

const SEEDS = Number(Deno.env.get("PLAN_SEEDS") ?? 60);
const ONLY_SEED = Deno.env.get("PLAN_SEED");
const STEPS = 40;

/** CIDRs that nest and overlap, both families, and one with host bits (an invalid IPRule). */
const CIDRS = [
  "10.0.0.0/8",
  "10.1.0.0/16",
  "10.1.1.0/24",
  "10.1.1.128/25",
  "10.2.0.0/16",
  "fd00::/16",
  "fd00:1::/32",
  "fd00:1:1::/48",
  "10.1.1.5/24",
];
/** LB IPs, few enough that Services share them; one no agent could use as a source. */
const LB_IPS = ["10.1.1.5", "10.1.1.200", "10.1.2.3", "10.2.3.4", "10.9.9.9", "fd00:1:1::5"];
const LB_IPS_RARE = ["fd00:2::1", "127.0.0.1"];
const NAMESPACES = ["default", "a", "b"];

type Managed = Parameters<typeof isManagedConfig>[0];

Deno.test("ConfigReconciler: after random change sequences the kept plan equals one from scratch and a resync writes nothing", async () => {
  const seeds = ONLY_SEED ? [Number(ONLY_SEED)] : Array.from({ length: SEEDS }, (_, i) => i + 1);
  for (const seed of seeds) {
    /** Whether changes come while a resync plans (not during the final one, which must find
     * nothing to write). */
    let interleave = false;
    const t = setup({
      resyncSlice: 1,
      resyncPause: () => {
        if (interleave && chance(0.2)) {
          changes.push(
            `during a resync: ${pick([changeService, changeIPRule, changeNamespace])()}`,
          );
        }
        return Promise.resolve();
      },
    });
    const random = new Random(seed);
    const pick = <T>(items: readonly T[]): T => random.pick(items);
    const chance = (p: number) => random.chance(p);
    const changes: string[] = [];
    const where = () => `seed ${seed} after: ${changes.join("; ")}`;

    const changeService = () => {
      const i = random.int(0, 9);
      const namespace = NAMESPACES[i % 3]!;
      if (chance(0.15)) {
        t.deleteService(`${namespace}/s${i}`);
        return `delete ${namespace}/s${i}`;
      }
      const lbIPs = [pick(chance(0.1) ? LB_IPS_RARE : LB_IPS)];
      if (chance(0.4)) lbIPs.push(pick(LB_IPS));
      const v4 = `10.96.0.${i + 1}`;
      const v6 = `fd00:96::${i + 1}`;
      const clusterIPs = pick([[v4], [v4, v6], [v4, v6], [v6], ["None"], []]);
      const svc: ServiceInfo = service(`s${i}`, lbIPs, clusterIPs, {
        namespace,
        type: chance(0.9) ? "LoadBalancer" : "ClusterIP",
        labels: chance(0.5) ? { app: pick(["x", "y"]) } : {},
      });
      t.setService(svc);
      return `service ${namespace}/s${i} ${svc.type} ${lbIPs} ${clusterIPs} ${svc.labels.app}`;
    };
    const changeIPRule = () => {
      const name = `r${random.int(0, 4)}`;
      if (chance(0.15)) {
        t.ipRules.objects.delete(name);
        t.caches.ipRules.sync();
        return `delete IPRule ${name}`;
      }
      const spec: IPRuleSpec = {
        cidrs: [...new Set([pick(CIDRS), ...(chance(0.4) ? [pick(CIDRS)] : [])])],
        table: random.int(100, 102),
        priority: pick([100, 1000]),
        ...(chance(0.2) ? { source: "LoadBalancerIP" as const } : {}),
        ...(chance(0.2) ? { serviceSelector: { matchLabels: { app: "x" } } } : {}),
        ...(chance(0.2) ? { namespaceSelector: { matchLabels: { tenant: "t1" } } } : {}),
      };
      // Now and then an IPRule being deleted (held by a finalizer): planned as gone.
      const deleting = chance(0.05)
        ? { finalizers: ["x/y"], deletionTimestamp: apiTime(t.clock.now) }
        : {};
      t.ipRules.put({ metadata: { name, ...deleting }, spec });
      t.caches.ipRules.sync();
      return `IPRule ${name} ${JSON.stringify(spec)}${deleting.finalizers ? " deleting" : ""}`;
    };
    const changeNamespace = () => {
      const namespace = pick(NAMESPACES);
      const labels = pick([{ tenant: "t1" }, { tenant: "t2" }, undefined]);
      t.setLabels(namespace, labels);
      return `namespace ${namespace} ${labels?.tenant}`;
    };
    const changeOther = () => {
      const what = random.float();
      if (what < 0.35) return changeNamespace();
      if (what < 0.7) {
        const ms = random.int(0, 1.5 * GRACE);
        t.advance(ms);
        return `${ms} ms later`;
      }
      if (what < 0.8) {
        // Someone edits one of our configs: the controller puts it back.
        const ours = [...t.configs.objects].filter(([, raw]) => isManagedConfig(raw as Managed));
        if (ours.length === 0) return "no config to edit";
        const [name, raw] = pick(ours);
        t.configs.put({ ...raw, spec: { ...(raw.spec as object), table: 7 } });
        t.caches.configs.sync();
        return `config ${name} edited`;
      }
      if (what < 0.9) return putConfig();
      const agent = t.agents.raw("agent");
      if (agent && !(agent.metadata as { deletionTimestamp?: string }).deletionTimestamp) {
        void t.agents.delete("agent"); // held by a foreground deletion: being deleted
      } else if (agent) t.agents.objects.clear();
      else {t.agents.put({
          metadata: { name: "agent", namespace: NS, finalizers: ["foregroundDeletion"] },
        });}
      t.caches.agents.sync();
      return "agent lifecycle step";
    };
    /** Foreign configs as written (never to be changed), by name. */
    const foreign = new Map<string, unknown>();
    /**
     * A config someone else writes at one of the sources the Services use: the original
     * operator's (its label, spec hash, acks and owner; now and then a copy of ours, as from a
     * backup), or a foreign one without a managed-by label.
     */
    const putConfig = () => {
      const source = pick([...Array.from({ length: 10 }, (_, i) => `10.96.0.${i + 1}`), ...LB_IPS]);
      const name = configName(parseIP(source)!);
      const current = t.configs.raw(name);
      const spec = current && chance(0.3) ? current.spec : {
        serviceIP: source,
        table: random.int(100, 102),
        priority: pick([100, 1000]),
        state: pick(["present", "absent"]),
      };
      const kind = chance(0.75) ? "original" : "foreign";
      const labels = kind === "original" ? { "managed-by": "ip-rule-operator" } : { team: "x" };
      t.configs.put({
        metadata: {
          name,
          labels,
          ...(kind === "original"
            ? {
              annotations: { "iprule.operator.brtrm.dev/spec-hash": "h" },
              ownerReferences: [{
                apiVersion: "api.operator.brtrm.dev/v1alpha1",
                kind: "IPRule",
                name: "r0",
                uid: "u",
              }],
            }
            : {}),
        },
        spec,
      });
      if (kind === "foreign") foreign.set(name, { labels, spec });
      else foreign.delete(name);
      t.caches.configs.sync();
      return `${kind} config ${name} ${JSON.stringify(spec)}`;
    };

    await t.start();
    interleave = true;
    for (let step = 0; step < STEPS; step++) {
      const roll = random.float();
      changes.push(roll < 0.55 ? changeService() : roll < 0.8 ? changeIPRule() : changeOther());
      assert.deepEqual(t.reconciler.checkPlan(), [], where());
      if (chance(0.15)) {
        changes.push("resync");
        t.queued.set(RESYNC_KEY, t.clock.now);
      }
      if (chance(0.7)) await t.run();
      assert.deepEqual(t.reconciler.checkPlan(), [], where());
    }
    interleave = false;
    await t.run();

    // A resync now finds nothing to correct and writes nothing.
    t.queued.set(RESYNC_KEY, t.clock.now);
    assert.equal(await t.run(), 0, where());
    assert.equal(await t.drift(), 0, where());

    // The API's objects are exactly what a plan from scratch wants.
    const full = planConfigs({
      services: [...t.services.values()],
      ipRules: [...t.caches.ipRules.store.values()],
      configs: [...t.configs.objects.values()].map(narrowIPRuleConfig),
      namespaceLabels: t.namespaces,
    }, {
      now: t.clock.now,
      graceMs: GRACE,
      ...configPolicy(t.caches.agents.store.get(`${NS}/agent`)),
    });
    assert.deepEqual(full.changes, [], where());
    // Present configs are ours, moved off the original's marks; foreign ones are as written.
    for (const [name, raw] of t.configs.objects) {
      const config = narrowIPRuleConfig(raw);
      if (foreign.has(name)) {
        const { labels, spec } = foreign.get(name) as { labels: unknown; spec: unknown };
        assert.deepEqual({ labels: config.metadata.labels, spec: raw.spec }, { labels, spec });
      } else if (config.spec.state === "present") {
        assert.ok(!hasOriginalMarks(config), `${name} keeps the original's marks: ${where()}`);
      }
    }
    for (const report of full.ipRules) {
      const rule = (await t.ipRules.get(report.name))!;
      const want = ipRuleStatus(rule, report, apiTime(t.clock.now));
      assert.ok(sameIPRuleStatus(rule.status, want), `${report.name}: ${where()}`);
    }
  }
});
