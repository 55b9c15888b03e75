/**
 * The main job, end to end on this machine: a local control plane, three "nodes" (network
 * namespaces) with two uplinks each, the controller and one agent per node as processes with
 * their executables' permission flags, sample IPRules and LoadBalancer Services — then what a
 * user sees: every node's rules, route lookups taking the policy route, the API objects, and
 * the rules leaving every node when a Service goes. `task demo` runs it (root);
 * `task demo:down` cleans up after a crashed run.
 */
import {
  AGENT_PORT,
  startTopology,
  type Topology,
  type TopologyNode,
} from "../tests/support/topology.ts";
import { eventually, ExecutableProcess, freePort } from "../tests/support/process.ts";
import {
  operatorJobs,
  type Prometheus,
  prometheusToken,
  startPrometheus,
} from "../tests/support/prometheus.ts";
import { KubeClient } from "../src/k8s/client.ts";
import { RESOURCES } from "../src/k8s/resources.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const STATE = `${ROOT}.cache/demo/state.json`;
export const DESTINATION = "203.0.113.9"; // TEST-NET-3: only looked up, never sent to
export const DESTINATION6 = "2001:db8::9";
// deno-lint-ignore no-explicit-any
type Json = any;

/** What a crashed demo leaves behind, for `demo:down`. */
export interface DemoState {
  namespaces: string[];
  links: string[];
  pids: number[];
}

export const bold = (s: string) => Deno.stdout.isTerminal() ? `\x1b[1m${s}\x1b[0m` : s;
export const dim = (s: string) => Deno.stdout.isTerminal() ? `\x1b[2m${s}\x1b[0m` : s;
let stepNo = 0;
const STEPS = 8;
function step(title: string): void {
  console.log(`\n${bold(`[${++stepNo}/${STEPS}] ${title}`)}`);
}
export function indent(text: string, by = "    "): string {
  return text.trimEnd().split("\n").map((l) => by + l).join("\n");
}

export async function sh(argv: string[]): Promise<string> {
  const out = await new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`Command "${argv.join(" ")}" failed: ${text.trim()}`);
  return text;
}

/** Removes what a previous run left: namespaces, links, processes (best effort, synchronous). */
export function cleanupSync(state: DemoState): void {
  for (const pid of state.pids) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* gone */ }
  }
  const run = (args: string[]) =>
    new Deno.Command("ip", { args, stdout: "null", stderr: "null" }).outputSync();
  for (const ns of state.namespaces) run(["netns", "del", ns]);
  for (const link of state.links) run(["link", "del", link]);
}

export async function saveState(state: DemoState): Promise<void> {
  await Deno.mkdir(`${ROOT}.cache/demo`, { recursive: true });
  await Deno.writeTextFile(STATE, JSON.stringify(state));
}

/**
 * A gateway namespace: a bridge with the uplink's gateway addresses, one port per node (by the
 * node's network namespace), and the uplink's default route in the node's table 100 or 200.
 */
export async function gateway(
  nodes: readonly string[],
  state: DemoState,
  letter: "a" | "b",
  v4: string,
  v6: string,
): Promise<string> {
  const ns = `iprt-demo-gw${letter}-${crypto.randomUUID().slice(0, 4)}`;
  await sh(["ip", "netns", "add", ns]);
  state.namespaces.push(ns);
  await saveState(state);
  await sh(["ip", "-n", ns, "link", "add", "br0", "type", "bridge"]);
  await sh(["ip", "-n", ns, "addr", "add", `${v4}.1/24`, "dev", "br0"]);
  await sh(["ip", "-n", ns, "-6", "addr", "add", `${v6}::1/64`, "dev", "br0", "nodad"]);
  await sh(["ip", "-n", ns, "link", "set", "br0", "up"]);
  for (const [i, node] of nodes.entries()) {
    const dev = `up${letter}`;
    const ip = (args: string[]) => sh(["ip", "-n", node, ...args]);
    await sh([
      "ip",
      "link",
      "add",
      dev,
      "netns",
      node,
      "type",
      "veth",
      "peer",
      "name",
      `p${i}`,
      "netns",
      ns,
    ]);
    await sh(["ip", "-n", ns, "link", "set", `p${i}`, "master", "br0", "up"]);
    await ip(["addr", "add", `${v4}.${11 + i}/24`, "dev", dev]);
    await ip(["-6", "addr", "add", `${v6}::${11 + i}/64`, "dev", dev, "nodad"]);
    await ip(["link", "set", dev, "up"]);
    const table = letter === "a" ? "100" : "200";
    await ip(["route", "add", "default", "via", `${v4}.1`, "dev", dev, "table", table]);
    await ip(["-6", "route", "add", "default", "via", `${v6}::1`, "dev", dev, "table", table]);
  }
  return ns;
}

/**
 * Prints a node's `ip rule` and `ip -6 rule` (by its network namespace), and with `clusterIPs`
 * the route lookups of each Service's traffic and of a source without a rule.
 */
export async function showNode(
  netns: string,
  title: string,
  clusterIPs?: ReadonlyMap<string, readonly string[]>,
): Promise<void> {
  const run = async (argv: string[]) => {
    const out = await new Deno.Command("ip", { args: ["-n", netns, ...argv.slice(1)] }).output();
    const text = new TextDecoder().decode(out.success ? out.stdout : out.stderr);
    return text;
  };
  console.log(`  ${bold(title)}`);
  console.log(indent(`$ ip rule show\n${await run(["ip", "rule", "show"])}`));
  console.log(indent(`$ ip -6 rule show\n${await run(["ip", "-6", "rule", "show"])}`));
  if (!clusterIPs) return;
  for (const svc of SERVICES) {
    for (const ip of clusterIPs.get(svc.name) ?? []) {
      const six = ip.includes(":");
      const argv = [
        "ip",
        ...(six ? ["-6"] : []),
        "route",
        "get",
        six ? DESTINATION6 : DESTINATION,
        "from",
        ip,
        "iif",
        "svc0",
      ];
      console.log(indent(`$ ${argv.join(" ")}\n${(await run(argv)).split("\n")[0]}`));
    }
  }
  const other = "10.96.255.254";
  const out = await run(["ip", "route", "get", DESTINATION, "from", other, "iif", "svc0"]);
  console.log(indent(
    `$ ip route get ${DESTINATION} from ${other} iif svc0   ${dim("# no rule: main table")}\n${
      out.split("\n")[0]
    }`,
  ));
}

/** A device where service traffic enters the node (`ip route get … iif svc0`). */
export async function addServiceLink(node: string): Promise<void> {
  await sh(["ip", "-n", node, "link", "add", "svc0", "type", "veth", "peer", "name", "svc0p"]);
  await sh(["ip", "-n", node, "link", "set", "svc0", "up"]);
  await sh(["ip", "-n", node, "link", "set", "svc0p", "up"]);
}

/** Each node: forwarding on, a default route via the bridge, a device where service traffic enters. */
async function prepareNode(topo: Topology, node: TopologyNode): Promise<void> {
  await node.ns.run(["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]);
  await node.ns.ip(["route", "add", "default", "via", topo.gateway, "dev", "eth0"]);
  await addServiceLink(node.ns.name);
}

export const IP_RULES = [
  {
    metadata: { name: "datacenter-a" },
    spec: { cidrs: ["10.0.0.0/16", "fd00:10::/64"], table: 100, priority: 1000 },
  },
  {
    metadata: { name: "datacenter-b" },
    spec: { cidrs: ["10.1.0.0/16", "fd00:20::/64"], table: 200, priority: 1000 },
  },
];
export const SERVICES = [
  { name: "web", dual: true, ingress: ["10.0.0.10", "fd00:10::10"] },
  { name: "api", dual: false, ingress: ["10.1.0.20"] },
  { name: "shop", dual: true, ingress: ["10.1.0.30", "fd00:20::30"] },
];

async function main(): Promise<number> {
  if (Deno.uid() !== 0) {
    console.error(
      "task demo needs root: it creates network namespaces and kernel rules (run it as root)",
    );
    return 1;
  }
  // A crashed earlier run: clean up first.
  const previous = await Deno.readTextFile(STATE).catch(() => undefined);
  if (previous) cleanupSync(JSON.parse(previous));

  const started = performance.now();
  const state: DemoState = { namespaces: [], links: [], pids: [] };
  const processes: ExecutableProcess[] = [];
  let topo: Topology | undefined;
  let prometheus: Prometheus | undefined;
  const onSignal = () => {
    console.error("\nInterrupted: cleaning up");
    for (const p of processes) state.pids.push(p.pid);
    if (topo) {
      state.namespaces.push(...topo.nodes.map((n) => n.ns.name));
      state.links.push(topo.bridge);
    }
    cleanupSync(state);
    Deno.removeSync(STATE);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);

  console.log(bold("ip-rule-operator demo: policy routing for LoadBalancer Services on 3 nodes"));
  try {
    step("A local control plane (kube-apiserver + etcd built from upstream) and 3 nodes");
    topo = await startTopology({ nodes: 3, namePrefix: "node" });
    state.namespaces.push(...topo.nodes.map((n) => n.ns.name));
    state.links.push(topo.bridge);
    await saveState(state);
    console.log(
      `    API server ${topo.cp.server}, nodes ${
        topo.nodes.map((n) => `${n.name} (${n.address})`).join(", ")
      }`,
    );
    console.log(
      dim(`    each node is a network namespace on bridge ${topo.bridge}; Node objects registered`),
    );

    step("Two uplinks per node: gateway A behind routing table 100, gateway B behind table 200");
    for (const node of topo.nodes) await prepareNode(topo, node);
    const names = topo.nodes.map((n) => n.ns.name);
    await gateway(names, state, "a", "192.0.2", "fd00:a");
    await gateway(names, state, "b", "198.51.100", "fd00:b");
    console.log(
      "    table 100: default via 192.0.2.1 (uplink A), table 200: default via 198.51.100.1 (uplink B)",
    );
    console.log(`    main table: default via ${topo.gateway} (the nodes' ordinary uplink)`);

    step("The controller and one agent per node, as processes with the executables' permissions");
    const port = freePort();
    const controller = await topo.startController(["--grace-period=10s"], { metricsPort: port });
    processes.push(controller);
    for (const node of topo.nodes) {
      processes.push(await topo.startAgent(node, [], { secureMetrics: true }));
    }
    state.pids = processes.map((p) => p.pid);
    await saveState(state);
    console.log(
      `    controller (metrics https://127.0.0.1:${port}/metrics, token required), agents on ${
        topo.nodes.map((n) => n.name).join(", ")
      }`,
    );
    console.log(dim(`    logs in ${topo.cp.dir}`));

    using admin = await KubeClient.connect({ kubeconfig: topo.cp.kubeconfig("admin") });
    step("Sample IPRules and LoadBalancer Services; an LB provider assigns their IPs");
    await admin.create(RESOURCES.agents, {
      metadata: { name: "agent", namespace: "ip-rule-operator-system" },
      spec: { nodeSelector: { "kubernetes.io/os": "linux" } },
    }, "ip-rule-operator-system");
    for (const rule of IP_RULES) {
      await admin.create(RESOURCES.ipRules, rule);
      console.log(
        `    IPRule ${rule.metadata.name}: ${
          rule.spec.cidrs.join(", ")
        } -> table ${rule.spec.table}`,
      );
    }
    const clusterIPs = new Map<string, string[]>();
    for (const svc of SERVICES) {
      const created: Json = await admin.create(RESOURCES.services, {
        metadata: { name: svc.name, namespace: "default" },
        spec: {
          type: "LoadBalancer",
          allocateLoadBalancerNodePorts: false,
          ports: [{ port: 443 }],
          ...(svc.dual ? { ipFamilyPolicy: "RequireDualStack", ipFamilies: ["IPv4", "IPv6"] } : {}),
        },
      }, "default");
      clusterIPs.set(svc.name, created.spec.clusterIPs);
      await admin.mergePatch(RESOURCES.services, svc.name, {
        status: { loadBalancer: { ingress: svc.ingress.map((ip) => ({ ip })) } },
      }, { namespace: "default", subresource: "status" });
      console.log(
        `    Service default/${svc.name}: ClusterIP ${created.spec.clusterIPs.join(", ")}, LB IP ${
          svc.ingress.join(", ")
        }`,
      );
    }
    const expected = SERVICES.reduce((n, s) => n + s.ingress.length, 0);
    await eventually("every node converged", async () => {
      const list: Json = await admin.request(
        "GET",
        "/apis/api.operator.brtrm.dev/v1alpha1/iprulenodestates",
      );
      return list.items.length === topo!.nodes.length &&
        list.items.every((s: Json) =>
          s.status?.desiredRules === expected && s.status?.appliedRules === expected &&
          s.status?.conditions?.some((c: Json) => c.type === "Converged" && c.status === "True")
        );
    }, 60_000);
    console.log(
      `    every node converged: ${expected} rules each, ${
        ((performance.now() - started) / 1000).toFixed(1)
      } s after start`,
    );

    step("What every node's kernel now has");
    for (const [i, node] of topo.nodes.entries()) {
      await showNode(node.ns.name, node.name, i === 0 ? clusterIPs : undefined);
    }

    step("The API objects");
    const get = await topo.cp.kubectl(["get", "iprules,ipruleconfigs,iprulenodestates"]);
    console.log(indent(get.stdout));
    const agents = await topo.cp.kubectl(["-n", "ip-rule-operator-system", "get", "agent"]);
    console.log(indent(agents.stdout));

    step(
      "Prometheus scrapes the controller and the agents over HTTPS with a service-account token",
    );
    const tokenFile = `${topo.cp.dir}/prometheus.token`;
    await prometheusToken(topo.cp, tokenFile);
    prometheus = await startPrometheus({
      dir: `${topo.cp.dir}/prometheus`,
      jobs: operatorJobs(
        `127.0.0.1:${port}`,
        topo.nodes.map((n) => ({ address: `${n.address}:${AGENT_PORT}`, node: n.name })),
        tokenFile,
      ),
      ruleFiles: [`${ROOT}deploy/monitoring/alerts.rules.yaml`],
    });
    const prom = prometheus;
    await eventually("every target up and every node's state scraped", async () => {
      const up = await prom.query("up == 1");
      const nodes = await prom.query('iprule_controller_node_rules{state="applied"} > 0');
      return up.length === topo!.nodes.length + 1 && nodes.length === topo!.nodes.length;
    }, 60_000);
    const value = async (expr: string) =>
      Object.fromEntries(
        (await prom.query(expr)).map((r) => [r.metric.node ?? "", r.value[1]] as const),
      );
    const converged = await value("iprule_controller_node_converged");
    const applied = await value('iprule_controller_node_rules{state="applied"}');
    const failed = await value('iprule_controller_node_rules{state="failed"}');
    console.log(indent(
      [
        `Prometheus ${prom.url} (while the demo runs), rules deploy/monitoring/alerts.rules.yaml:`,
        "node     converged  applied  failed",
        ...topo.nodes.map((n) =>
          `${n.name.padEnd(9)}${(converged[n.name] ?? "-").padEnd(11)}${
            (applied[n.name] ?? "-").padEnd(9)
          }${failed[n.name] ?? "-"}`
        ),
        dim("Grafana: import deploy/monitoring/dashboard.json; in a cluster: README, Monitoring"),
      ].join("\n"),
    ));

    step("Service default/api is deleted: its rule leaves every node");
    await admin.delete(RESOURCES.services, "api", { namespace: "default" });
    const apiIP = clusterIPs.get("api")![0]!;
    await eventually("the rule gone everywhere", async () => {
      for (const node of topo!.nodes) {
        if ((await node.ns.run(["ip", "rule", "show"])).stdout.includes(`from ${apiIP} `)) {
          return false;
        }
      }
      return true;
    }, 30_000);
    const node0 = topo.nodes[0]!;
    console.log(
      indent(
        `$ ip rule show   ${
          dim(`# ${node0.name}: from ${apiIP} is gone, and from the other nodes`)
        }\n${(await node0.ns.run(["ip", "rule", "show"])).stdout}`,
      ),
    );
    const config: Json = await admin.get(
      RESOURCES.ipRuleConfigs,
      `iprc-${apiIP.replaceAll(".", "-")}`,
    );
    console.log(
      indent(
        `IPRuleConfig iprc-${apiIP.replaceAll(".", "-")}: state ${
          config?.spec?.state ?? "deleted"
        } (deleted after the grace period)`,
      ),
    );

    console.log(`\n${bold("Summary")}`);
    console.log(indent(
      [
        "Two IPRules mapped LoadBalancer IP ranges to routing tables 100 and 200. For each Service",
        "whose LB IP fell in a range, the controller wrote one IPRuleConfig per ClusterIP (IPv4 and",
        "IPv6), and the agent on every node installed `from <ClusterIP> lookup <table>` through",
        "netlink, marked with its own protocol (proto 201) so it never touches other rules. The",
        "route lookups show service traffic leaving through the uplink of its table, while other",
        "sources keep the main table. Deleting a Service removed its rule from every node.",
        `Everything ran locally in ${
          ((performance.now() - started) / 1000).toFixed(0)
        } s; now cleaning up.`,
      ].join("\n"),
      "  ",
    ));
    return 0;
  } finally {
    await prometheus?.stop();
    for (const p of processes) await p.stop().catch(() => {});
    await topo?.stop().catch((e) => console.error(`Cleanup: ${e}`));
    cleanupSync({
      namespaces: state.namespaces.filter((n) => n.startsWith("iprt-demo-gw")),
      links: [],
      pids: [],
    });
    await Deno.remove(STATE).catch(() => {});
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}

if (import.meta.main) {
  if (Deno.args[0] === "down") {
    const saved = await Deno.readTextFile(STATE).catch(() => undefined);
    if (saved) cleanupSync(JSON.parse(saved));
    await Deno.remove(STATE).catch(() => {});
    // Namespaces and bridges of any interrupted demo or test run, by their name prefixes.
    for (const line of (await sh(["ip", "netns", "list"])).split("\n")) {
      const name = line.split(" ")[0];
      if (name?.startsWith("iprt-demo-")) cleanupSync({ namespaces: [name], links: [], pids: [] });
    }
    console.log("Demo resources removed");
  } else {
    Deno.exit(await main());
  }
}
