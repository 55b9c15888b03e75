import assert from "node:assert/strict";
import { addressFlag, durationFlag, helpText, UsageError } from "./cli.ts";
import { AGENT_FLAGS, DEFAULT_PROTOCOL, parseAgentFlags } from "./agent/flags.ts";
import { CONTROLLER_FLAGS, DEFAULT_NAMESPACE, parseControllerFlags } from "./controller/flags.ts";

const ctx = { env: {}, isTerminal: false, hostname: "node-1" };

Deno.test("parseAgentFlags() applies the documented defaults", () => {
  const o = parseAgentFlags([], ctx);
  assert.equal(o.nodeName, "node-1");
  assert.equal(o.resyncMs, 10_000);
  assert.equal(o.statusIntervalMs, 10_000);
  assert.equal(o.protocol, DEFAULT_PROTOCOL);
  assert.equal(o.logFormat, "json");
  assert.deepEqual(o.metricsAddr, { hostname: "::", port: 9472 });
  assert.deepEqual(o.healthAddr, { hostname: "::", port: 9473 });
  assert.equal(o.metricsSecure, true);
  assert.equal(o.once, false);
  assert.equal(o.namespace, undefined, "no namespace outside a Pod: no uninstall watch");
  assert.equal(
    parseAgentFlags([], { ...ctx, env: { POD_NAMESPACE: "ops" } }).namespace,
    "ops",
  );
  assert.equal(o.adoptUnmarkedRules, false);
  assert.equal(
    parseAgentFlags([], { ...ctx, env: { NODE_NAME: "w2" }, isTerminal: true }).logFormat,
    "text",
  );
  assert.equal(parseAgentFlags([], { ...ctx, env: { NODE_NAME: "w2" } }).nodeName, "w2");
});

Deno.test("parseAgentFlags() reads every flag", () => {
  const o = parseAgentFlags([
    "--kubeconfig=/k",
    "--node-name=n1",
    "--namespace=ops",
    "--resync=250ms",
    "--status-interval=1m30s",
    "--protocol=77",
    "--once",
    "--dry-run",
    "--adopt-unmarked-rules",
    "--libmnl=/opt/libmnl.so.0",
    "--metrics-addr=127.0.0.1:9999",
    "--health-addr=[::1]:9998",
    "--metrics-cert-dir=/certs",
    "--log-format=text",
    "--log-level=debug",
  ], ctx);
  assert.deepEqual(o, {
    help: false,
    version: false,
    kubeconfig: "/k",
    nodeName: "n1",
    namespace: "ops",
    resyncMs: 250,
    statusIntervalMs: 90_000,
    protocol: 77,
    once: true,
    dryRun: true,
    adoptUnmarkedRules: true,
    libmnlPath: "/opt/libmnl.so.0",
    metricsAddr: { hostname: "127.0.0.1", port: 9999 },
    healthAddr: { hostname: "::1", port: 9998 },
    metricsSecure: true,
    metricsCertDir: "/certs",
    logFormat: "text",
    logLevel: "debug",
  });
});

Deno.test("parse*Flags() turn mistakes into one-line UsageErrors naming flag and value", () => {
  const cases: [string[], RegExp][] = [
    [["--resync=abc"], /--resync: "abc"/],
    [["--resync=0s"], /--resync: "0s"/],
    [["--resync=10ms"], /--resync: "10ms" \(expected at least 50ms\)/],
    [["--status-interval=often"], /--status-interval: "often" \(expected a duration/],
    [["--status-interval=0s"], /--status-interval: "0s"/],
    [["--status-interval=50ms"], /--status-interval: "50ms" \(expected at least 100ms\)/],
    [["--protocol=256"], /--protocol: "256"/],
    [["--protocol=x"], /--protocol: "x"/],
    // The kernel's own default rules carry protocol 2: owning it would delete them.
    [["--protocol=2"], /--protocol: "2" \(2 is the "kernel" protocol .* such as 201\)/],
    [["--protocol=4"], /--protocol: "4" \(4 is the "static" protocol/],
    [["--protocol=12"], /--protocol: "12" \(12 is the "bird" protocol/],
    [["--protocol=186"], /--protocol: "186" \(186 is the "bgp" protocol/],
    // Adoption marks the unmarked rules it takes over: with someone else's number, as theirs.
    [
      ["--adopt-unmarked-rules", "--protocol=4"],
      /--protocol: "4" \(4 is the "static" protocol .* --adopt-unmarked-rules the rules it takes over would carry it too/,
    ],
    // Protocol 0 is what the unmarked rules carry: owning it would make them all the agent's.
    [["--adopt-unmarked-rules", "--protocol=0"], /--protocol: "0" \(expected an integer from 1/],
    [["--log-format=xml"], /--log-format: "xml"/],
    [["--metrics-addr=9090"], /--metrics-addr: "9090"/],
    [["--health-addr=:99999"], /--health-addr: ":99999"/],
    // --metrics-insecure serves no TLS: a certificate directory would be silently unused.
    [
      ["--metrics-insecure", "--metrics-cert-dir=/c"],
      /--metrics-cert-dir: "\/c" \(--metrics-insecure/,
    ],
    [["--node-name=Bad_Name"], /--node-name: "Bad_Name"/],
    [["--namespace=Ops.System"], /--namespace: "Ops.System" \(expected a DNS-1123 label\)/],
    [["--bogus"], /Unknown option '--bogus'/],
    [["stray"], /stray/],
  ];
  for (const [args, message] of cases) {
    assert.throws(() => parseAgentFlags(args, ctx), (err: unknown) => {
      assert.ok(err instanceof UsageError, args.join(" "));
      assert.match(err.message, message);
      assert.ok(!err.message.includes("\n"), "one line");
      return true;
    });
  }
  assert.throws(() => parseControllerFlags(["--grace-period=soon"], ctx), /--grace-period: "soon"/);
  assert.throws(
    () => parseControllerFlags(["--agent-status-interval=10"], ctx),
    /--agent-status-interval: "10" \(expected a duration/,
  );
  assert.throws(() => parseControllerFlags(["--resync-period=x"], ctx), /--resync-period: "x"/);
});

Deno.test("parseControllerFlags() applies defaults and reads the namespace from the pod", () => {
  const o = parseControllerFlags([], ctx);
  assert.equal(o.namespace, DEFAULT_NAMESPACE);
  assert.equal(o.gracePeriodMs, 300_000);
  assert.equal(o.leaderElect, false);
  assert.equal(o.agentStatusIntervalMs, 10_000);
  assert.equal(o.resyncPeriodMs, 300_000);
  // kubebuilder's ports: /metrics over HTTPS on 8443, the probes on 8081.
  assert.deepEqual(o.metricsAddr, { hostname: "::", port: 8443 });
  assert.deepEqual(o.healthAddr, { hostname: "::", port: 8081 });
  assert.equal(o.metricsSecure, true);
  assert.equal(parseControllerFlags(["--metrics-insecure"], ctx).metricsSecure, false);
  assert.equal(
    parseControllerFlags([], { ...ctx, env: { POD_NAMESPACE: "ops" } }).namespace,
    "ops",
  );
  const set = parseControllerFlags(
    [
      "--leader-elect",
      "--grace-period=2s",
      "--agent-image=img:1",
      "--agent-status-interval=1m",
      "--resync-period=30s",
    ],
    ctx,
  );
  assert.equal(set.agentStatusIntervalMs, 60_000);
  assert.equal(set.resyncPeriodMs, 30_000);
  assert.equal(set.leaderElect, true);
  assert.equal(set.gracePeriodMs, 2000);
  assert.equal(set.agentImage, "img:1");
});

Deno.test("helpText() lists every flag of both executables", () => {
  for (const defs of [AGENT_FLAGS, CONTROLLER_FLAGS]) {
    const text = helpText("x", "summary", defs);
    for (const def of defs) assert.match(text, new RegExp(`--${def.name}\\b`));
    assert.match(text, /--help/);
  }
  for (
    const name of [
      "once",
      "dry-run",
      "kubeconfig",
      "node-name",
      "resync",
      "status-interval",
      "protocol",
      "log-format",
      "metrics-addr",
      "health-addr",
      "metrics-insecure",
      "metrics-cert-dir",
    ]
  ) {
    assert.ok(AGENT_FLAGS.some((d) => d.name === name), name);
  }
});

Deno.test("durationFlag() and addressFlag() parse their forms", () => {
  assert.equal(durationFlag("d", "1m"), 60_000);
  assert.equal(durationFlag("d", "1.5s"), 1500);
  // Compounds as the Agent CRD's resyncPeriod allows them.
  assert.equal(durationFlag("d", "1m30s"), 90_000);
  assert.equal(durationFlag("d", "1h2m3s4ms"), 3_723_004);
  for (const bad of ["", "10", "s", "1x", "1m 30s", "-1s", "0s", "0ms0s"]) {
    assert.throws(
      () => durationFlag("d", bad),
      /Invalid value for --d: ".*" \(expected a duration/,
      bad,
    );
  }
  assert.throws(() => durationFlag("d", "50ms", 100), /--d: "50ms" \(expected at least 100ms\)/);
  assert.equal(durationFlag("d", "100ms", 100), 100);
  // Beyond 2^31-1 ms setTimeout would fire at once: a resync of 597h would be a busy loop.
  assert.equal(durationFlag("d", "596h"), 596 * 3_600_000);
  assert.throws(() => durationFlag("d", "597h"), /--d: "597h" \(expected at most 596h\)/);
  assert.throws(() => durationFlag("d", "596h1ms"), /expected at most 596h/);
  assert.deepEqual(addressFlag("a", "[::1]:80"), { hostname: "::1", port: 80 });
  assert.throws(() => addressFlag("a", ":70000"), UsageError);
});
