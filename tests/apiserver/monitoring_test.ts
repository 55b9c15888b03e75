/**
 * The monitoring manifests with the real tools (promtool built from the Prometheus module): the
 * alerts pass `promtool check rules`, their unit tests (deploy/monitoring/alerts.test.yaml) pass
 * `promtool test rules` and cover every alert firing and staying silent, and would fail if an
 * alert went missing; the dashboard is well-formed Grafana JSON whose every panel has a query.
 * That every query and alert expression runs against a real Prometheus scraping the controller
 * and the agents is tests/e2e/monitoring_test.ts.
 */
import assert from "node:assert/strict";
import { stringify } from "yaml";
import { ALERTS_PATH, readYaml, ROOT } from "../../scripts/manifests.ts";
import { runTool, tool } from "../support/tools.ts";

// deno-lint-ignore no-explicit-any
type Json = any;

const TESTS_PATH = "deploy/monitoring/alerts.test.yaml";
const DASHBOARD_PATH = "deploy/monitoring/dashboard.json";

/** The list: what the alerts must cover, by name. */
const REQUIRED_ALERTS = [
  "IPRuleNodeNotConverged",
  "IPRuleNodeFailedRules",
  "IPRuleOperatorNoLeader",
  "IPRuleAgentNotReady",
  "IPRuleAgentNotScheduled",
  "IPRuleConflict",
  "IPRuleDriftRepairsHigh",
  "IPRuleOperatorAPIErrors",
];

async function alertRules(): Promise<Json[]> {
  const [file] = await readYaml(ALERTS_PATH);
  return file.groups.flatMap((g: Json) => g.rules);
}

Deno.test("promtool check rules accepts the alerts; each has a severity and runbook text", async () => {
  const out = await tool("promtool", ["check", "rules", ALERTS_PATH]);
  const rules = await alertRules();
  assert.match(out, new RegExp(`SUCCESS: ${rules.length} rules found`));
  assert.deepEqual(rules.map((r) => r.alert).sort(), [...REQUIRED_ALERTS].sort());
  for (const rule of rules) {
    assert.match(rule.labels.severity, /^(critical|warning|info)$/, rule.alert);
    for (const annotation of ["summary", "description", "runbook"]) {
      assert.ok(
        (rule.annotations[annotation] ?? "").length > 20,
        `${rule.alert} has no ${annotation}`,
      );
    }
  }
});

Deno.test("promtool test rules: every alert fires when it should and stays silent when it should not", async () => {
  const result = await runTool("promtool", ["test", "rules", TESTS_PATH]);
  assert.ok(result.success, `promtool test rules failed:\n${result.stdout}${result.stderr}`);
  assert.match(result.stdout, /SUCCESS/);
  const [tests] = await readYaml(TESTS_PATH);
  const cases = tests.tests.flatMap((t: Json) => t.alert_rule_test);
  for (const alert of REQUIRED_ALERTS) {
    const mine = cases.filter((c: Json) => c.alertname === alert);
    assert.ok(mine.some((c: Json) => c.exp_alerts.length > 0), `no test where ${alert} fires`);
    assert.ok(
      mine.some((c: Json) => c.exp_alerts.length === 0),
      `no test where ${alert} is silent`,
    );
  }
});

Deno.test("promtool test rules fails when any alert is missing or fires at once", async () => {
  const dir = await Deno.makeTempDir({ prefix: "alerts-" });
  try {
    const [file] = await readYaml(ALERTS_PATH);
    const [tests] = await readYaml(TESTS_PATH);
    await Deno.writeTextFile(`${dir}/alerts.test.yaml`, stringify(tests));
    const mutants: [string, Json][] = [];
    for (const alert of REQUIRED_ALERTS) {
      const without = structuredClone(file);
      for (const g of without.groups) g.rules = g.rules.filter((r: Json) => r.alert !== alert);
      mutants.push([`${alert} removed`, without]);
      const hasty = structuredClone(file);
      for (const g of hasty.groups) {
        for (const r of g.rules) if (r.alert === alert) delete r.for;
      }
      mutants.push([`${alert} without its for:`, hasty]);
    }
    for (const [what, rules] of mutants) {
      await Deno.writeTextFile(`${dir}/alerts.rules.yaml`, stringify(rules));
      const result = await runTool("promtool", ["test", "rules", "alerts.test.yaml"], { cwd: dir });
      assert.ok(!result.success, `promtool test rules passed with ${what}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the dashboard is Grafana JSON with a Prometheus query in every panel", async () => {
  const dashboard = JSON.parse(await Deno.readTextFile(`${ROOT}/${DASHBOARD_PATH}`));
  assert.equal(dashboard.uid, "ip-rule-operator");
  assert.equal(typeof dashboard.schemaVersion, "number");
  assert.deepEqual(
    dashboard.templating.list.map((v: Json) => [v.name, v.type, v.query]),
    [["datasource", "datasource", "prometheus"]],
  );
  const panels = dashboard.panels.filter((p: Json) => p.type !== "row");
  const ids = dashboard.panels.map((p: Json) => p.id);
  assert.equal(new Set(ids).size, ids.length, "panel ids are unique");
  // The list of what the dashboard shows.
  const exprs = panels.flatMap((p: Json) => p.targets.map((t: Json) => t.expr)).join("\n");
  for (
    const metric of [
      "iprule_controller_node_converged",
      "iprule_controller_node_rules",
      "iprule_agent_drift_repairs_total",
      "iprule_agent_reconcile_duration_seconds_bucket",
      "iprule_controller_reconcile_duration_seconds_bucket",
      "iprule_controller_workqueue_depth",
      "iprule_controller_api_request_duration_seconds_bucket",
      "iprule_controller_leader",
    ]
  ) {
    assert.ok(exprs.includes(metric), `no panel queries ${metric}`);
  }
  for (const panel of panels) {
    assert.ok(panel.targets.length > 0, `panel "${panel.title}" has no query`);
    assert.equal(panel.datasource.uid, "${datasource}", panel.title);
    for (const target of panel.targets) {
      assert.ok(target.expr.trim() !== "", `panel "${panel.title}" has an empty query`);
    }
    const { x, y, w, h } = panel.gridPos;
    assert.ok(x >= 0 && x + w <= 24 && y >= 0 && h > 0, `panel "${panel.title}" is off the grid`);
  }
});
