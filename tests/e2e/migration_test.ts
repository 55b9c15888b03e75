/**
 * Migration from the original operator end to end: nodes (network namespaces) holding the
 * original's footprint, as its agent leaves it (rules added without a protocol, as `ip rule add`
 * does): unmarked rules for current configs, one leaked with an old table, one of a config
 * marked absent, an admin's unmarked rules (an unrelated source, and a config's source with a
 * firewall mark), and a rule shaped exactly like the original's that is no config's. Then our
 * agent, with adoption on and off, against a real kube-apiserver. Assertions read `ip -d rule
 * show`; across the adoption a poller dumps the node's rules every few milliseconds and the
 * longest time an adopted rule was missing is reported (it must never be seen missing).
 *
 * One topology (two nodes) serves the file; each scenario has its own addresses, starts its own
 * agent and removes its configs, rules and node state at its end, so any scenario runs alone
 * (`deno test -A tests/e2e/migration_test.ts --filter "<name>"`).
 */
import assert from "node:assert/strict";
import { type KernelRule, RuleSocket } from "../../ffi/mod.ts";
import type { IPRuleNodeState } from "../../src/api/types.ts";
import { KubeClient } from "../../src/k8s/client.ts";
import { RESOURCES } from "../../src/k8s/resources.ts";
import { eventually, type ExecutableProcess } from "../support/process.ts";
import { killAtExit, type Scenario, scenarioTest, sharedPart } from "../support/shared.ts";
import { startTopology, type TopologyNode } from "../support/topology.ts";

const PROTO = 201;
/** The original's label on its configs (the agent reads configs whatever their labels). */
const ORIGINAL_LABELS = { "managed-by": "ip-rule-operator" };

const world = sharedPart(() => startTopology({ nodes: 2, namePrefix: "migr" }));

/** `ip -d rule show` and `ip -6 -d rule show` lines of a node, the kernel's own left out. */
async function rules(node: TopologyNode): Promise<string[]> {
  const text = (await node.ns.ip(["-d", "rule", "show"])) +
    (await node.ns.ip(["-6", "-d", "rule", "show"]));
  return text.split("\n").filter((l) => l !== "" && !l.endsWith(" proto kernel"));
}

/** The original's footprint on a node, with `n` the third octet of its Service addresses. */
function footprint(n: number) {
  const v4 = (host: number) => `10.96.${n}.${host}`;
  const v6 = `fd00:96::${n}:2`;
  return {
    /** Configs: two present (IPv4, IPv6), one absent. */
    configs: [
      { name: `iprc-10-96-${n}-1`, serviceIP: v4(1), table: 100, priority: 1000 },
      { name: `iprc-fd00-96-0-0-0-0-${n}-2`, serviceIP: v6, table: 100, priority: 1000 },
      { name: `iprc-10-96-${n}-3`, serviceIP: v4(3), table: 100, priority: 1000, absent: true },
    ],
    /** The original's rules for the present configs: adopted. */
    current: [
      ["from", v4(1), "lookup", "100", "priority", "1000"],
      ["-6", "from", v6, "lookup", "100", "priority", "1000"],
    ],
    /** What the original leaked: an old table of a config, the rule of an absent one. */
    leaked: [
      ["from", v4(1), "lookup", "50", "priority", "1000"],
      ["from", v4(3), "lookup", "100", "priority", "1000"],
    ],
    /** Unmarked rules adoption must leave as they are. */
    kept: [
      ["from", `10.99.${n}.1`, "lookup", "300", "priority", "500"], // an admin's
      ["from", v4(1), "fwmark", "0x7", "lookup", "300", "priority", "1500"], // an admin's, selector
      ["from", v4(9), "lookup", "100", "priority", "1000"], // the original's shape, no config's
    ],
    /** `ip -d rule show` lines of the agent's own rules once adopted. */
    adopted: [
      `1000:\tfrom ${v4(1)} lookup 100 proto ${PROTO}`,
      `1000:\tfrom ${v6} lookup 100 proto ${PROTO}`,
    ],
  };
}

/** `ip rule add` (or `ip -6 rule add`) of one rule spec in a node. */
function ipRule(node: TopologyNode, op: "add" | "del", spec: string[]) {
  const family = spec[0] === "-6" ? ["-6"] : [];
  const rest = spec[0] === "-6" ? spec.slice(1) : spec;
  return node.ns.run(["ip", ...family, "rule", op, ...rest]);
}

/** A scenario on one node: the footprint, its configs, the agent, all undone at the end. */
class Migration implements Scenario {
  readonly node: TopologyNode;
  readonly fp: ReturnType<typeof footprint>;
  /** The node's rules once prepared, before any agent ran. */
  before: string[] = [];
  readonly #topo: Awaited<ReturnType<typeof world>>;
  readonly #admin: KubeClient;
  #agent: ExecutableProcess | undefined;

  constructor(topo: Awaited<ReturnType<typeof world>>, admin: KubeClient, node: number, n: number) {
    this.#topo = topo;
    this.#admin = admin;
    this.node = topo.node(node);
    this.fp = footprint(n);
  }

  /** The original's rules in the kernel and its configs in the API. */
  async prepare(): Promise<void> {
    for (const spec of [...this.fp.current, ...this.fp.leaked, ...this.fp.kept]) {
      const out = await ipRule(this.node, "add", spec);
      assert.equal(out.code, 0, out.stderr);
    }
    for (const c of this.fp.configs) {
      await this.#admin.create(RESOURCES.ipRuleConfigs, {
        metadata: { name: c.name, labels: ORIGINAL_LABELS },
        spec: {
          serviceIP: c.serviceIP,
          table: c.table,
          priority: c.priority,
          state: c.absent ? "absent" : "present",
        },
      });
    }
    this.before = await rules(this.node);
  }

  /** Starts the agent on the node with `args`; stopped at the scenario's end. */
  async agent(args: string[], logName: string): Promise<ExecutableProcess> {
    const proc = await this.#topo.startAgent(this.node, ["--resync=10m", ...args], { logName });
    this.#agent = proc;
    killAtExit(() => proc.pid);
    return proc;
  }

  /** Waits until the node's state reports both present configs applied and converged. */
  converged(): Promise<IPRuleNodeState> {
    return eventually(`${this.node.name} converged`, async () => {
      const state = await this.#admin.get(RESOURCES.ipRuleNodeStates, this.node.name) as
        | IPRuleNodeState
        | undefined;
      const s = state?.status;
      return s?.desiredRules === 2 && s.appliedRules === 2 &&
        s.conditions?.some((c) => c.type === "Converged" && c.status === "True") && state;
    }, 60_000);
  }

  async cleanup(): Promise<void> {
    await this.#agent?.stop();
    for (const c of this.fp.configs) {
      await this.#admin.delete(RESOURCES.ipRuleConfigs, c.name).catch(() => false);
    }
    for (const spec of [...this.fp.current, ...this.fp.leaked, ...this.fp.kept]) {
      await ipRule(this.node, "del", spec);
    }
    for (const family of ["-4", "-6"]) {
      await this.node.ns.run(["ip", family, "rule", "flush", "protocol", String(PROTO)]);
    }
    await this.#admin.delete(RESOURCES.ipRuleNodeStates, this.node.name).catch(() => false);
    this.#admin.close();
  }

  async printLogs(): Promise<void> {
    if (this.#agent === undefined) return;
    console.error(
      `--- ${this.#agent.logFile} (tail)\n${
        (await this.#agent.log()).split("\n").slice(-40).join("\n")
      }`,
    );
  }
}

function scenario(
  name: string,
  where: { node: number; n: number },
  body: (s: Migration) => Promise<void>,
): void {
  scenarioTest(name, async () => {
    const topo = await world();
    const admin = await KubeClient.connect({ kubeconfig: topo.cp.kubeconfig("admin") });
    return new Migration(topo, admin, where.node, where.n);
  }, body);
}

/** What a poller saw of some rules: samples, and per rule how long it was missing at most. */
interface PollReport {
  samples: number;
  /** Longest time between two samples, ms. */
  maxIntervalMs: number;
  /** Per watched rule: samples that did not find it, and the longest time it was missing, ms. */
  missing: Map<string, { samples: number; longestMs: number }>;
}

/**
 * Dumps the node's rules every millisecond or so (a rule socket in its namespace) until `stop`,
 * watching the rules whose `key` is in `watch`: a rule is there when any rule of any protocol
 * has its family, source, table and priority.
 */
function poll(node: TopologyNode, watch: readonly string[]) {
  const key = (r: KernelRule) => `${r.family} ${r.src} ${r.table} ${r.priority}`;
  const socket = node.ns.enter(() => RuleSocket.open());
  const report: PollReport = { samples: 0, maxIntervalMs: 0, missing: new Map() };
  const since = new Map<string, number>(); // when each missing rule was last seen
  for (const w of watch) report.missing.set(w, { samples: 0, longestMs: 0 });
  let stopped = false;
  const running = (async () => {
    let previous = performance.now();
    const lastSeen = new Map(watch.map((w) => [w, previous]));
    while (!stopped) {
      const present = new Set((await socket.listRules()).map(key));
      const now = performance.now();
      report.samples++;
      report.maxIntervalMs = Math.max(report.maxIntervalMs, now - previous);
      previous = now;
      for (const w of watch) {
        const entry = report.missing.get(w)!;
        if (present.has(w)) {
          if (since.has(w)) entry.longestMs = Math.max(entry.longestMs, now - lastSeen.get(w)!);
          since.delete(w);
          lastSeen.set(w, now);
        } else {
          entry.samples++;
          since.set(w, now);
        }
      }
      await new Promise((r) => setTimeout(r, 1));
    }
  })();
  return {
    async stop(): Promise<PollReport> {
      stopped = true;
      await running;
      socket.close();
      return report;
    },
  };
}

scenario(
  "with adoption on, the original's rules are marked without a gap and its leftovers deleted",
  { node: 0, n: 71 },
  async (s) => {
    const { node, fp, before } = s;
    const kept = before.filter((l) =>
      fp.kept.some((spec) => l.includes(`from ${spec[1]} `) && l.includes(` ${spec.at(-3)} `))
    );
    assert.equal(kept.length, fp.kept.length, before.join("\n"));
    const watch = [
      `4 ${fp.configs[0]!.serviceIP} 100 1000`,
      `6 ${fp.configs[1]!.serviceIP} 100 1000`,
    ];
    const poller = poll(node, watch);
    let report: PollReport;
    try {
      await s.agent(["--adopt-unmarked-rules"], "agent-adopt.log");
      await s.converged();
      await eventually("rules adopted", async () => {
        const now = await rules(node);
        return fp.adopted.every((l) => now.includes(l)) &&
          !now.some((l) => l.includes("lookup 50"));
      });
    } finally {
      report = await poller.stop();
    }
    const after = await rules(node);
    // Every current rule carries our protocol, once; nothing unmarked of a current config.
    assert.deepEqual(
      after.filter((l) => l.endsWith(` proto ${PROTO}`)).sort(),
      [...fp.adopted].sort(),
    );
    // The leaked rules are gone; the admin's and the no-config rule are byte-identical.
    assert.deepEqual(after.filter((l) => !l.endsWith(` proto ${PROTO}`)), kept);

    for (const [rule, { samples, longestMs }] of report.missing) {
      console.log(
        `adoption of "${rule}" on ${node.name}: missing in ${samples} of ${report.samples} ` +
          `dumps, longest gap ${longestMs.toFixed(2)} ms (dumps at most ` +
          `${report.maxIntervalMs.toFixed(2)} ms apart)`,
      );
      assert.equal(samples, 0, `"${rule}" was seen missing during the adoption`);
    }
    assert.ok(report.samples > 10, `only ${report.samples} dumps`);
  },
);

scenario(
  "with adoption off, no unmarked rule is touched and the node converges on them",
  { node: 1, n: 72 },
  async (s) => {
    await s.agent([], "agent-no-adopt.log");
    const state = await s.converged();
    assert.deepEqual(state.status?.failedRules ?? [], []);
    // The unmarked rules satisfy the desired ones: no rule added, none deleted.
    assert.deepEqual(await rules(s.node), s.before);
  },
);

scenario(
  "--dry-run with adoption lists what adoption would do and changes nothing",
  { node: 1, n: 73 },
  async (s) => {
    const { node, fp, before } = s;
    const dry = await s.agent(["--dry-run", "--adopt-unmarked-rules"], "agent-adopt-dry-run.log");
    const status = await dry.status;
    const log = await dry.log();
    assert.equal(status.code, 0, log);
    const lines = log.split("\n");
    const [a, v6, absent] = fp.configs.map((c) => c.serviceIP);
    for (
      const expected of [
        `ip rule add from ${a} lookup 100 priority 1000 proto ${PROTO}  # adopts the unmarked rule`,
        `ip rule del from ${a} lookup 100 priority 1000  # adopted`,
        `ip -6 rule add from ${v6} lookup 100 priority 1000 proto ${PROTO}  # adopts the ` +
        "unmarked rule",
        `ip rule del from ${a} lookup 50 priority 1000  # unmarked leftover: its source is an ` +
        "IPRuleConfig's, its table or priority is not",
        `ip rule del from ${absent} lookup 100 priority 1000  # unmarked leftover: its source ` +
        "is an IPRuleConfig's, its table or priority is not",
        "# 0 to add, 0 to delete, 0 desired rule(s) already present, 2 unmarked to adopt, 2 " +
        "unmarked to delete, 0 unmarked left in place; nothing was changed",
      ]
    ) {
      assert.ok(lines.includes(expected), `Expected "${expected}" in:\n${log}`);
    }
    assert.ok(!lines.some((l) => l.includes("10.99.") || l.includes(".9 ")), log);
    assert.deepEqual(await rules(node), before);
  },
);
