/**
 * The Agent reconcile: Agent CR → DaemonSet `iprule-agent` (written only when its rendered
 * spec changes), Agent status, each node's drain mark, and the uninstall drain as the drain
 * module decides it (src/drain.ts). Writes go through typed clients; the results of our own
 * writes go into the caches at once, and a write the API server refuses as stale (409, or a
 * vanished object) requeues the key instead of failing the reconcile.
 */
import { nameList, setCondition } from "../api/conditions.ts";
import {
  type Agent,
  AGENT_NAME,
  type DaemonSetInfo,
  type IPRuleConfig,
  type IPRuleNodeState,
  type NodeInfo,
} from "../api/types.ts";
import {
  AGENT_FINALIZER,
  type DrainCondition,
  drainMarks,
  finalizerRemoval,
  uninstallStep,
} from "../drain.ts";
import { ApiError } from "../k8s/client.ts";
import {
  type Cache,
  type Objects,
  STALE_REQUEUE_MS,
  StaleCacheError,
  staleWrite,
  type WritableCache,
} from "../k8s/objects.ts";
import { apiTime } from "../k8s/time.ts";
import type { Logger } from "../log.ts";
import { agentStatus, sameAgentStatus, selectedNodes } from "./agent_status.ts";
import { DAEMONSET_NAME, renderDaemonSet, SPEC_HASH_ANNOTATION } from "./daemonset.ts";

export { AGENT_FINALIZER };

/** The caches an Agent reconcile reads. */
export interface AgentCaches {
  agents: WritableCache<Agent>;
  daemonSets: WritableCache<DaemonSetInfo>;
  nodes: Cache<NodeInfo>;
  nodeStates: WritableCache<IPRuleNodeState>;
  configs: Cache<IPRuleConfig>;
}

/** The writes an Agent reconcile makes. */
export interface AgentWrites {
  agents: Pick<Objects<Agent>, "mergePatch" | "jsonPatch">;
  daemonSets: Pick<Objects<DaemonSetInfo>, "apply" | "delete">;
  nodeStates: Pick<Objects<IPRuleNodeState>, "mergePatch">;
}

/** Options of an `AgentReconciler`. */
export interface AgentReconcilerOptions {
  /** The operator's namespace: the Agent's, its DaemonSet's. */
  namespace: string;
  /** Image when the Agent names none. */
  agentImage: string;
  /** How long an uninstall waits for the nodes, ms. */
  drainTimeoutMs: number;
  log: Logger;
  /** Clock (ms since the epoch), for tests. */
  now?: () => number;
}

/** Reconciles the Agent CR of the operator's namespace. */
export class AgentReconciler {
  readonly #api: AgentWrites;
  readonly #caches: AgentCaches;
  readonly #options: AgentReconcilerOptions;

  constructor(api: AgentWrites, caches: AgentCaches, options: AgentReconcilerOptions) {
    this.#api = api;
    this.#caches = caches;
    this.#options = options;
  }

  /** Whether every cache has synced. */
  get synced(): boolean {
    return Object.values(this.#caches).every((c) => c.synced);
  }

  /** The Agent of our namespace, when it exists. */
  #agent(): Agent | undefined {
    return this.#caches.agents.store.get(`${this.#options.namespace}/${AGENT_NAME}`);
  }

  #now(): number {
    return (this.#options.now ?? Date.now)();
  }

  /** One reconcile; returns a delay after which to run again, if any. */
  async reconcile(reconcileID: string): Promise<number | undefined> {
    if (!this.synced) throw new Error("Caches not synced");
    const agent = this.#agent();
    const step = uninstallStep({
      agent,
      configs: this.#caches.configs.store.values(),
      nodeStates: this.#caches.nodeStates.store.values(),
      now: this.#now(),
      timeoutMs: this.#options.drainTimeoutMs,
    });
    // No Agent: its DaemonSet goes with it (owner reference). Released: nothing of ours left.
    if (agent === undefined || step.phase === "NoAgent" || step.phase === "Released") return;
    const log = this.#options.log.with({ reconcileID, kind: "Agent", name: agent.metadata.name });
    try {
      switch (step.phase) {
        case "Draining":
          await this.#setDraining(agent, step.condition);
          return step.requeueMs;
        case "TimedOut":
          log.warn("Drain timed out; nodes keep rules", {
            count: step.nodes.length,
            nodes: nameList(step.nodes),
          });
          await this.#setDraining(agent, step.condition);
          await this.#finish(agent, step.elapsedMs, log);
          return;
        case "Drained":
          await this.#finish(agent, step.elapsedMs, log);
          return;
        case "Installing":
          await this.#addFinalizer(agent, log);
          return await this.#deploy(log);
        case "Installed":
          return await this.#deploy(log);
      }
    } catch (error: unknown) {
      if (!staleWrite(error)) throw error;
      log.debug("Write skipped, cache stale", { err: error, delayMs: STALE_REQUEUE_MS });
      return STALE_REQUEUE_MS;
    }
  }

  async #addFinalizer(agent: Agent, log: Logger): Promise<void> {
    this.#caches.agents.learn(
      await this.#api.agents.mergePatch(agent.metadata.name, {
        metadata: {
          resourceVersion: agent.metadata.resourceVersion,
          finalizers: [...(agent.metadata.finalizers ?? []), AGENT_FINALIZER],
        },
      }),
    );
    log.info("Finalizer added");
  }

  /** The DaemonSet, the nodes' drain marks and the Agent's status, for a live Agent. */
  async #deploy(log: Logger): Promise<undefined> {
    const agent = this.#agent()!;
    const desired = renderDaemonSet(agent, { defaultImage: this.#options.agentImage });
    const hash = hashOf(desired);
    const key = `${this.#options.namespace}/${DAEMONSET_NAME}`;
    const current = this.#caches.daemonSets.store.get(key);
    let invalidSpec: string | undefined;
    if (current?.metadata.annotations?.[SPEC_HASH_ANNOTATION] !== hash) {
      try {
        this.#caches.daemonSets.learn(await this.#api.daemonSets.apply(DAEMONSET_NAME, desired));
        log.info(current ? "DaemonSet updated" : "DaemonSet created", {
          daemonSet: DAEMONSET_NAME,
        });
      } catch (error: unknown) {
        // A spec the CRD admits but the DaemonSet does not (a toleration, label key or quantity
        // Kubernetes refuses): say so in the Agent's status and go on with drains and status.
        if (!(error instanceof ApiError) || (error.status !== 400 && error.status !== 422)) {
          throw error;
        }
        invalidSpec = error.message;
        log.warn("DaemonSet refused; Agent spec invalid", { err: error });
      }
    }

    await this.#markDrains(agent, log);

    const status = agentStatus(agent, {
      ...(current ? { daemonSet: current.counts } : {}),
      nodes: [...this.#caches.nodes.store.values()],
      states: this.#statesByNode(),
      ...(invalidSpec === undefined ? {} : { invalidSpec }),
    }, apiTime(this.#now()));
    if (!sameAgentStatus(agent.status, status)) {
      this.#caches.agents.learn(
        await this.#api.agents.mergePatch(agent.metadata.name, { status }, {
          subresource: "status",
        }),
      );
    }
    return undefined;
  }

  /** Sets or clears `spec.drain` on each node state to match the Agent's selection. */
  async #markDrains(agent: Agent, log: Logger): Promise<void> {
    const selected = new Set(
      selectedNodes(agent, [...this.#caches.nodes.store.values()]).map((n) => n.name),
    );
    for (const { node, drain } of drainMarks(selected, this.#caches.nodeStates.store.values())) {
      this.#caches.nodeStates.learn(
        await this.#api.nodeStates.mergePatch(node, { spec: { drain } }),
      );
      log.info(
        drain ? "Node left the Agent's selection; drain set" : "Node selected; drain cleared",
        { node },
      );
    }
  }

  #statesByNode(): Map<string, IPRuleNodeState> {
    return new Map(
      [...this.#caches.nodeStates.store.values()].map((s) => [s.metadata.name, s]),
    );
  }

  /** The end of a drain: the DaemonSet deleted, then the finalizer removed. */
  async #finish(agent: Agent, elapsedMs: number, log: Logger): Promise<void> {
    await this.#api.daemonSets.delete(DAEMONSET_NAME);
    this.#caches.daemonSets.forget(`${this.#options.namespace}/${DAEMONSET_NAME}`);
    // The cached resourceVersion may be stale (our own status write, anyone's): the patch
    // tests the finalizer's entry instead.
    try {
      await this.#api.agents.jsonPatch(
        agent.metadata.name,
        finalizerRemoval(agent.metadata.finalizers ?? []),
      );
    } catch (error: unknown) {
      // 422 is the API server's answer to a failed `test`: the finalizers changed since cached.
      if (!(error instanceof ApiError && error.status === 422)) throw error;
      throw new StaleCacheError("Agent finalizers changed since cached", { cause: error });
    }
    log.info("Agent drained; DaemonSet deleted and finalizer removed", { elapsedMs });
  }

  async #setDraining(agent: Agent, condition: DrainCondition): Promise<void> {
    const existing = agent.status?.conditions?.find((c) => c.type === condition.type);
    if (
      existing?.status === condition.status && existing.reason === condition.reason &&
      existing.message === condition.message
    ) {
      return;
    }
    const conditions = setCondition(agent.status?.conditions, condition, apiTime(this.#now()));
    this.#caches.agents.learn(
      await this.#api.agents.mergePatch(agent.metadata.name, { status: { conditions } }, {
        subresource: "status",
      }),
    );
  }
}

/** The spec hash a rendered DaemonSet carries. */
function hashOf(daemonSet: Record<string, unknown>): string | undefined {
  const meta = daemonSet.metadata as { annotations?: Record<string, string> };
  return meta.annotations?.[SPEC_HASH_ANNOTATION];
}
