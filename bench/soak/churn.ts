/**
 * Makes the API server match the soak's model of Services and IPRules, one object at a time and
 * level-based: each object the model changed is looked at until the API holds what the model
 * says, so a write that failed during an outage is made once the API answers again. Every
 * request has a deadline, because while etcd is down the API server holds requests up to a
 * minute.
 */
import { ApiError, type JsonObject, type KubeClient } from "../../src/k8s/client.ts";
import { RESOURCES } from "../../src/k8s/resources.ts";
import { resourcePath } from "../../src/k8s/resources.ts";
import {
  type Family,
  type IPRuleModel,
  type ServiceModel,
  SOAK_LABEL,
  SOAK_NAMESPACE,
  type World,
  type WorldChange,
} from "./world.ts";

/** Deadline of one API request of the churn, ms. */
const REQUEST_TIMEOUT_MS = 5_000;
/** Delay before an object whose write failed is looked at again, ms. */
const RETRY_MS = 1_000;
/** Objects written at once. */
const CONCURRENCY = 4;

interface ServiceState {
  family: Family;
  lbIPs: string[];
}

/** What the API holds of one object as far as our writes told us; "unknown" after a failure. */
type Known<T> = T | "absent" | "unknown";

function familyOf(raw: JsonObject): Family {
  const families = (raw.spec as { ipFamilies?: string[] } | undefined)?.ipFamilies ?? [];
  return families.length > 1 ? "dual" : families[0] === "IPv6" ? "IPv6" : "IPv4";
}

function ingressOf(raw: JsonObject): string[] {
  const status = raw.status as { loadBalancer?: { ingress?: { ip?: string }[] } } | undefined;
  return (status?.loadBalancer?.ingress ?? []).flatMap((i) => (i.ip ? [i.ip] : []));
}

/** The churn's writes to the API server. */
export class ChurnExecutor {
  readonly #client: KubeClient;
  readonly #world: World;
  readonly #dirty = new Map<string, number>();
  readonly #inFlight = new Set<string>();
  readonly #services = new Map<string, Known<ServiceState>>();
  readonly #ipRules = new Map<string, Known<string>>();
  /** Successful writes. */
  writes = 0;
  /** Failed requests (each retried). */
  failures = 0;
  /** When the last write succeeded, performance.now(). */
  lastWriteAt = 0;

  constructor(client: KubeClient, world: World) {
    this.#client = client;
    this.#world = world;
    for (const s of world.services) this.#services.set(s.name, "unknown");
    for (const r of world.ipRules) this.#ipRules.set(r.name, "unknown");
  }

  /** The model changed this object: make the API match it. */
  mark(change: Pick<WorldChange, "kind" | "name">): void {
    this.#dirty.set(`${change.kind}/${change.name}`, 0);
  }

  /** Marks every object, e.g. before the first run. */
  markAll(): void {
    for (const s of this.#world.services) this.mark({ kind: "Service", name: s.name });
    for (const r of this.#world.ipRules) this.mark({ kind: "IPRule", name: r.name });
  }

  /** Whether the API matches the model as far as the churn knows. */
  get settled(): boolean {
    return this.#dirty.size === 0 && this.#inFlight.size === 0;
  }

  /** Writes until the signal aborts. */
  async run(signal: AbortSignal): Promise<void> {
    const workers = Array.from({ length: CONCURRENCY }, async () => {
      while (!signal.aborted) {
        const now = performance.now();
        const key = [...this.#dirty].find(([k, due]) => due <= now && !this.#inFlight.has(k))?.[0];
        if (key === undefined) {
          await new Promise((r) => setTimeout(r, 10));
          continue;
        }
        this.#dirty.delete(key);
        this.#inFlight.add(key);
        try {
          await this.#sync(key);
        } catch {
          this.failures++;
          if (!this.#dirty.has(key)) this.#dirty.set(key, performance.now() + RETRY_MS);
        } finally {
          this.#inFlight.delete(key);
        }
      }
    });
    await Promise.all(workers);
  }

  /** Waits until the API matches the model, or the deadline; returns whether it does. */
  async settle(timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (!this.settled && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    return this.settled;
  }

  async #sync(key: string): Promise<void> {
    const [kind, name] = key.split("/") as ["Service" | "IPRule", string];
    if (kind === "Service") {
      await this.#syncService(this.#world.services.find((s) => s.name === name)!);
    } else {
      await this.#syncIPRule(this.#world.ipRules.find((r) => r.name === name)!);
    }
  }

  async #request(
    method: string,
    path: string,
    options: { body?: unknown; contentType?: string } = {},
  ): Promise<JsonObject | undefined> {
    try {
      const result = await this.#client.request(method, path, {
        ...options,
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      if (method !== "GET") {
        this.writes++;
        this.lastWriteAt = performance.now();
      }
      return result;
    } catch (error: unknown) {
      if (error instanceof ApiError && error.status === 404) return undefined;
      throw error;
    }
  }

  async #syncService(model: ServiceModel): Promise<void> {
    const path = (sub = "") =>
      resourcePath(RESOURCES.services, { namespace: SOAK_NAMESPACE, name: model.name }) + sub;
    const forget = () => this.#services.set(model.name, "unknown");
    let state = this.#services.get(model.name)!;
    try {
      if (state === "unknown") {
        const raw = await this.#request("GET", path());
        state = raw ? { family: familyOf(raw), lbIPs: ingressOf(raw) } : "absent";
        this.#services.set(model.name, state);
      }
      if (state !== "absent" && (!model.exists || state.family !== model.family)) {
        await this.#request("DELETE", path());
        state = "absent";
        this.#services.set(model.name, state);
      }
      if (!model.exists) return;
      if (state === "absent") {
        const raw = await this.#request(
          "POST",
          resourcePath(RESOURCES.services, { namespace: SOAK_NAMESPACE }),
          { body: serviceObject(model) },
        );
        state = { family: familyOf(raw!), lbIPs: [] };
        this.#services.set(model.name, state);
      }
      if (state.lbIPs.join(",") !== model.lbIPs.join(",")) {
        const raw = await this.#request("PATCH", path("/status"), {
          body: { status: { loadBalancer: { ingress: model.lbIPs.map((ip) => ({ ip })) } } },
          contentType: "application/merge-patch+json",
        });
        if (raw === undefined) throw new Error(`Service "${model.name}" gone`);
        this.#services.set(model.name, { family: familyOf(raw), lbIPs: ingressOf(raw) });
      }
    } catch (error: unknown) {
      forget();
      throw error;
    }
  }

  async #syncIPRule(model: IPRuleModel): Promise<void> {
    const path = resourcePath(RESOURCES.ipRules, { name: model.name });
    let state = this.#ipRules.get(model.name)!;
    const want = JSON.stringify(model.spec);
    try {
      if (state === "unknown") {
        const raw = await this.#request("GET", path);
        state = raw ? JSON.stringify(ruleSpec(raw)) : "absent";
        this.#ipRules.set(model.name, state);
      }
      if (!model.exists) {
        if (state !== "absent") await this.#request("DELETE", path);
        this.#ipRules.set(model.name, "absent");
        return;
      }
      if (state === "absent") {
        const raw = await this.#request("POST", resourcePath(RESOURCES.ipRules, {}), {
          body: {
            apiVersion: "api.operator.brtrm.dev/v1alpha1",
            kind: "IPRule",
            metadata: { name: model.name, labels: { [SOAK_LABEL]: "true" } },
            spec: model.spec,
          },
        });
        this.#ipRules.set(model.name, JSON.stringify(ruleSpec(raw!)));
      } else if (state !== want) {
        const raw = await this.#request("PATCH", path, {
          body: { spec: { source: null, ...model.spec } },
          contentType: "application/merge-patch+json",
        });
        if (raw === undefined) throw new Error(`IPRule "${model.name}" gone`);
        this.#ipRules.set(model.name, JSON.stringify(ruleSpec(raw)));
      }
    } catch (error: unknown) {
      this.#ipRules.set(model.name, "unknown");
      throw error;
    }
  }
}

/** The spec fields the model sets, in the model's key order, for comparison. */
function ruleSpec(raw: JsonObject): unknown {
  const spec = raw.spec as Record<string, unknown>;
  return {
    cidrs: spec.cidrs,
    table: spec.table,
    priority: spec.priority,
    ...(spec.source === undefined || spec.source === "ClusterIP" ? {} : { source: spec.source }),
  };
}

/** A LoadBalancer Service of the model's family (its LB IPs go in the status afterwards). */
function serviceObject(model: ServiceModel): JsonObject {
  const families = model.family === "dual"
    ? { ipFamilyPolicy: "RequireDualStack", ipFamilies: ["IPv4", "IPv6"] }
    : { ipFamilyPolicy: "SingleStack", ipFamilies: [model.family] };
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name: model.name, namespace: SOAK_NAMESPACE, labels: { [SOAK_LABEL]: "true" } },
    spec: {
      type: "LoadBalancer",
      allocateLoadBalancerNodePorts: false,
      ports: [{ port: 80 }],
      ...families,
    },
  };
}
