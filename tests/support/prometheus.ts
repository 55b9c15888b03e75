/**
 * A real Prometheus (built from its Go module by scripts/tools-build.sh) for the end-to-end
 * tests and the demo: static scrape jobs over HTTPS with a service-account token, the alert
 * rules loaded, the HTTP API on loopback. Killed with its parent (setpriv --pdeathsig) and on
 * stop; its data lives in the given directory.
 *
 * @module
 */
import { stringify } from "yaml";
import type { ControlPlane } from "./controlplane.ts";
import { freePort } from "./process.ts";
import { toolPath } from "./tools.ts";

/** One static scrape job. */
export interface ScrapeJob {
  name: string;
  scheme: "http" | "https";
  /** File with the bearer token sent on each scrape; none: no credentials. */
  tokenFile?: string;
  targets: { address: string; labels?: Record<string, string> }[];
}

/** Options of {@linkcode startPrometheus}. */
export interface PrometheusOptions {
  /** Directory for the configuration, the TSDB and the log. */
  dir: string;
  jobs: ScrapeJob[];
  /** Rule files to load (absolute paths). */
  ruleFiles?: string[];
  /** Scrape and rule evaluation interval; default 1s. */
  interval?: string;
}

/** One scrape target as /api/v1/targets reports it. */
export interface TargetHealth {
  job: string;
  instance: string;
  health: "up" | "down" | "unknown";
  lastError: string;
}

// deno-lint-ignore no-explicit-any
type Json = any;

/** A running Prometheus. */
export class Prometheus {
  readonly url: string;
  readonly logFile: string;
  readonly #child: Deno.ChildProcess;
  #stopped = false;

  constructor(url: string, child: Deno.ChildProcess, logFile: string) {
    this.url = url;
    this.#child = child;
    this.logFile = logFile;
  }

  async #api(path: string, form?: Record<string, string>): Promise<Json> {
    const res = await fetch(`${this.url}/api/v1/${path}`, {
      ...(form ? { method: "POST", body: new URLSearchParams(form) } : {}),
    });
    const body = await res.json();
    if (body.status !== "success") {
      throw new Error(`Prometheus ${path} failed: ${body.errorType}: ${body.error}`);
    }
    return body.data;
  }

  /** An instant query's result vector (throws with Prometheus' error when it does not parse). */
  async query(
    expr: string,
  ): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
    const data = await this.#api("query", { query: expr });
    return data.resultType === "vector" ? data.result : [{ metric: {}, value: data.result }];
  }

  /** The syntax tree of an expression (/api/v1/parse_query). */
  parse(expr: string): Promise<Json> {
    return this.#api("parse_query", { query: expr });
  }

  /** The scrape targets and their health. */
  async targets(): Promise<TargetHealth[]> {
    const data = await this.#api("targets?state=active");
    return data.activeTargets.map((t: Json) => ({
      job: t.labels.job,
      instance: t.labels.instance,
      health: t.health,
      lastError: t.lastError,
    }));
  }

  /** The loaded rule groups with their rules' health. */
  async rules(): Promise<Json[]> {
    return (await this.#api("rules")).groups;
  }

  /** Kills Prometheus and waits for it; idempotent. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // Already exited.
    }
    await this.#child.status;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

/** The prometheus.yml of the jobs. */
export function prometheusConfig(options: PrometheusOptions): string {
  const interval = options.interval ?? "1s";
  return stringify({
    global: { scrape_interval: interval, evaluation_interval: interval, scrape_timeout: interval },
    rule_files: options.ruleFiles ?? [],
    scrape_configs: options.jobs.map((job) => ({
      job_name: job.name,
      scheme: job.scheme,
      ...(job.tokenFile
        ? { authorization: { type: "Bearer", credentials_file: job.tokenFile } }
        : {}),
      // Self-signed certificates, as the executables make by default; the token is the guard.
      ...(job.scheme === "https" ? { tls_config: { insecure_skip_verify: true } } : {}),
      static_configs: job.targets.map((t) => ({
        targets: [t.address],
        ...(t.labels ? { labels: t.labels } : {}),
      })),
    })),
  });
}

/** Starts Prometheus on a free loopback port and waits until it is ready. */
export async function startPrometheus(options: PrometheusOptions): Promise<Prometheus> {
  const binary = toolPath("prometheus");
  await Deno.mkdir(`${options.dir}/data`, { recursive: true });
  await Deno.writeTextFile(`${options.dir}/prometheus.yml`, prometheusConfig(options));
  const port = freePort();
  const logFile = `${options.dir}/prometheus.log`;
  const child = new Deno.Command("/bin/sh", {
    args: [
      "-c",
      'log=$1; shift; exec "$@" >>"$log" 2>&1',
      "sh",
      logFile,
      "setpriv",
      "--pdeathsig",
      "KILL",
      "--",
      binary,
      `--config.file=${options.dir}/prometheus.yml`,
      `--storage.tsdb.path=${options.dir}/data`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const prometheus = new Prometheus(`http://127.0.0.1:${port}`, child, logFile);
  const deadline = Date.now() + 60_000;
  let exited = false;
  child.status.then(() => (exited = true));
  for (;;) {
    const res = await fetch(`${prometheus.url}/-/ready`).catch(() => undefined);
    await res?.body?.cancel();
    if (res?.status === 200) return prometheus;
    if (exited || Date.now() > deadline) {
      await prometheus.stop();
      const log = await Deno.readTextFile(logFile).catch(() => "");
      throw new Error(`Prometheus did not become ready: ${log.slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Where the operator's metrics-reader is granted: the Prometheus service account. */
export const PROMETHEUS_ACCOUNT = { namespace: "monitoring", name: "prometheus" };

/**
 * Creates the Prometheus service account, binds it to ip-rule-operator-metrics-reader (as the
 * README tells users to) and writes a real token of it (TokenRequest) to `file`.
 */
export async function prometheusToken(cp: ControlPlane, file: string): Promise<void> {
  const { namespace, name } = PROMETHEUS_ACCOUNT;
  await cp.kubectl(["create", "namespace", namespace]);
  await cp.kubectl(["create", "serviceaccount", name, "-n", namespace]);
  await cp.kubectl([
    "create",
    "clusterrolebinding",
    `${namespace}-${name}-ip-rule-operator-metrics`,
    "--clusterrole=ip-rule-operator-metrics-reader",
    `--serviceaccount=${namespace}:${name}`,
  ]);
  const token = await cp.kubectl(["create", "token", name, "-n", namespace, "--duration=2h"]);
  await Deno.writeTextFile(file, token.stdout.trim(), { mode: 0o600 });
}

/** The operator's scrape jobs: the controller and one target per node's agent (label node). */
export function operatorJobs(
  controller: string,
  agents: { address: string; node: string }[],
  tokenFile: string,
): ScrapeJob[] {
  return [
    {
      name: "ip-rule-operator-controller",
      scheme: "https",
      tokenFile,
      targets: [{ address: controller }],
    },
    {
      name: "ip-rule-operator-agents",
      scheme: "https",
      tokenFile,
      targets: agents.map((a) => ({ address: a.address, labels: { node: a.node } })),
    },
  ];
}
