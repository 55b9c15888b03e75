/**
 * The Agent reconcile: Agent CR → DaemonSet `iprule-agent` (written only when its rendered
 * spec changes), Agent status and each node's drain mark, as the drain module decides
 * (src/drain.ts): the drain marks before the DaemonSet changes, nothing deployed for an Agent
 * being deleted (its agents drain as they stop), and an earlier version's finalizer removed;
 * the original operator's DaemonSet is handed over in place (handover.ts). What it reads of the
 * fleet comes from the `AgentTally`,
 * kept per event, so one reconcile costs the same on any number of nodes; the Agent's status
 * is written at most once per interval, condition changes after a short floor
 * (src/write_pacer.ts). Writes go through typed clients; the results of our own writes go into
 * the caches at once, and a write the API server refuses as stale (409, or a vanished object)
 * requeues the key instead of failing the reconcile.
 */
import {
  type Agent,
  AGENT_NAME,
  type AgentStatus,
  type DaemonSetInfo,
  type IPRuleConfig,
  type IPRuleNodeState,
  type NodeInfo,
} from "../api/types.ts";
import { finalizerRemoval, uninstallStep } from "../drain.ts";
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
import { DEFAULT_STATUS_INTERVAL_MS, WritePacer } from "../write_pacer.ts";
import { agentStatus, sameAgentStatus, urgentAgentChange } from "./agent_status.ts";
import type { AgentTally } from "./agent_tally.ts";
import { DAEMONSET_NAME, renderDaemonSet, SPEC_HASH_ANNOTATION } from "./daemonset.ts";
import type { UserEvent } from "./events.ts";
import {
  handOverDaemonSet,
  handOverEvent,
  type HandOverStep,
  handOverStep,
  originalMarks,
} from "./handover.ts";

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
  daemonSets: Pick<Objects<DaemonSetInfo>, "apply" | "jsonPatch">;
  nodeStates: Pick<Objects<IPRuleNodeState>, "mergePatch">;
}

/** Options of an `AgentReconciler`. */
export interface AgentReconcilerOptions {
  /** The operator's namespace: the Agent's, its DaemonSet's. */
  namespace: string;
  /** Image when the Agent names none. */
  agentImage: string;
  /**
   * The counts of the nodes, node states and configs, fed by the caches' change events (see
   * `AgentTally`); the reconciler feeds it its own node state writes.
   */
  tally: AgentTally;
  /** Least time between two Agent status writes, ms (default 10 s; 0: no pacing). */
  statusIntervalMs?: number;
  log: Logger;
  /** Where Events for users go (the DaemonSet's hand-over from the original operator). */
  events?: { record(events: readonly UserEvent[]): Promise<void> };
  /** Clock (ms since the epoch), for tests. */
  now?: () => number;
}

/** Reconciles the Agent CR of the operator's namespace. */
export class AgentReconciler {
  readonly #api: AgentWrites;
  readonly #caches: AgentCaches;
  readonly #options: AgentReconcilerOptions;
  readonly #tally: AgentTally;
  readonly #pacer: WritePacer;

  constructor(api: AgentWrites, caches: AgentCaches, options: AgentReconcilerOptions) {
    this.#api = api;
    this.#caches = caches;
    this.#options = options;
    this.#tally = options.tally;
    this.#pacer = new WritePacer({
      intervalMs: options.statusIntervalMs ?? DEFAULT_STATUS_INTERVAL_MS,
    });
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
    this.#tally.agent(agent);
    const step = uninstallStep(agent);
    // No Agent: its DaemonSet goes with it (owner reference), its agents drain as they stop.
    if (agent === undefined || step.phase === "NoAgent") return;
    const log = this.#options.log.with({ reconcileID, kind: "Agent", name: agent.metadata.name });
    try {
      if (step.releaseFinalizer) await this.#releaseFinalizer(agent, step.phase, log);
      // Deleting: the DaemonSet is left to the garbage collector, the drain to the agents.
      if (step.phase === "Deleting") return;
      return await this.#deploy(log);
    } catch (error: unknown) {
      if (!staleWrite(error)) throw error;
      log.debug("Write skipped, cache stale", { err: error, delayMs: STALE_REQUEUE_MS });
      return STALE_REQUEUE_MS;
    }
  }

  /**
   * Removes the finalizer an earlier version put on the Agent. The cached resourceVersion may be
   * stale (our own status write, anyone's): the patch tests the finalizer's entry instead.
   */
  async #releaseFinalizer(
    agent: Agent,
    phase: "Installed" | "Deleting",
    log: Logger,
  ): Promise<void> {
    let released: Agent;
    try {
      released = await this.#api.agents.jsonPatch(
        agent.metadata.name,
        finalizerRemoval(agent.metadata.finalizers ?? []),
      );
    } catch (error: unknown) {
      // 422 is the API server's answer to a failed `test`: the finalizers changed since cached.
      if (!(error instanceof ApiError && error.status === 422)) throw error;
      throw new StaleCacheError("Agent finalizers changed since cached", { cause: error });
    }
    this.#caches.agents.learn(released);
    log.info(
      phase === "Deleting"
        ? "Finalizer of an earlier version removed; the agents remove their rules as they stop"
        : "Finalizer of an earlier version removed",
    );
  }

  /**
   * The nodes' drain marks, the DaemonSet and the Agent's status, for a live Agent; returns a
   * delay after which to look again (the original's DaemonSet hand-over, or a status change the
   * pacing holds back), if any. The marks come first: a DaemonSet that no longer selects a node
   * stops its agent at once, and that agent must find its mark when it stops.
   */
  async #deploy(log: Logger): Promise<number | undefined> {
    const agent = this.#agent()!;
    await this.#markDrains(log);
    const desired = renderDaemonSet(agent, { defaultImage: this.#options.agentImage });
    const hash = hashOf(desired);
    const key = `${this.#options.namespace}/${DAEMONSET_NAME}`;
    const current = this.#caches.daemonSets.store.get(key);
    // The original operator's DaemonSet is taken over in place (handover.ts); while its
    // controller writes it back, it is left alone (no endless rollouts).
    const handOver = handOverStep(current, this.#now());
    let invalidSpec: string | undefined;
    if (
      handOver.action === "handOver" ||
      (handOver.action === "none" && current?.metadata.annotations?.[SPEC_HASH_ANNOTATION] !== hash)
    ) {
      try {
        if (handOver.action === "handOver") {
          await this.#handOver(agent, desired, current!, handOver, log);
        } else {
          this.#caches.daemonSets.learn(await this.#api.daemonSets.apply(DAEMONSET_NAME, desired));
          log.info(current ? "DaemonSet updated" : "DaemonSet created", {
            daemonSet: DAEMONSET_NAME,
          });
        }
      } catch (error: unknown) {
        // A spec the CRD admits but the DaemonSet does not (a toleration, label key or quantity
        // Kubernetes refuses): say so in the Agent's status and go on with the status.
        if (!(error instanceof ApiError) || (error.status !== 400 && error.status !== 422)) {
          throw error;
        }
        invalidSpec = error.message;
        log.warn("DaemonSet refused; Agent spec invalid", { err: error });
      }
    }

    const status = agentStatus(agent, {
      ...(current ? { daemonSet: current.counts } : {}),
      fleet: this.#tally.fleet,
      ...(invalidSpec === undefined ? {} : { invalidSpec }),
    }, apiTime(this.#now()));
    let delay: number | undefined;
    if (sameAgentStatus(agent.status, status)) {
      this.#pacer.settled();
    } else {
      delay = await this.#writeStatus(agent, status, {
        urgent: urgentAgentChange(agent.status, status),
      });
    }
    if (handOver.action !== "wait") return delay;
    await this.#leaveToOriginal(agent, current!, handOver, log);
    return Math.min(delay ?? Infinity, handOver.retryMs);
  }

  /** Replaces the original operator's DaemonSet by ours in one write, and says so. */
  async #handOver(
    agent: Agent,
    desired: Record<string, unknown>,
    live: DaemonSetInfo,
    step: HandOverStep & { action: "handOver" },
    log: Logger,
  ): Promise<void> {
    const marks = originalMarks(live);
    this.#caches.daemonSets.learn(
      await handOverDaemonSet(this.#api.daemonSets, desired, live, apiTime(this.#now())),
    );
    log.info("DaemonSet handed over from the original operator", {
      daemonSet: DAEMONSET_NAME,
      managers: step.managers,
      marks,
    });
    await this.#event(handOverEvent(agent.metadata, step, marks));
  }

  /** The original's controller wrote the DaemonSet back: say so, write nothing. */
  async #leaveToOriginal(
    agent: Agent,
    live: DaemonSetInfo,
    step: HandOverStep & { action: "wait" },
    log: Logger,
  ): Promise<void> {
    log.warn("DaemonSet carries the original operator's marks again; its controller still runs", {
      daemonSet: DAEMONSET_NAME,
      managers: step.managers,
      since: step.since,
      retryMs: step.retryMs,
    });
    await this.#event(handOverEvent(agent.metadata, step, originalMarks(live)));
  }

  async #event(event: UserEvent | undefined): Promise<void> {
    if (event !== undefined) await this.#options.events?.record([event]);
  }

  /** Merge-patches the Agent's status when the pacer lets it; else the delay until it may. */
  async #writeStatus(
    agent: Agent,
    status: AgentStatus,
    options: { urgent: boolean },
  ): Promise<number | undefined> {
    const now = this.#now();
    const due = this.#pacer.dueAt(now, options.urgent);
    if (due > now) return due - now;
    this.#caches.agents.learn(
      await this.#api.agents.mergePatch(agent.metadata.name, { status }, {
        subresource: "status",
      }),
    );
    this.#pacer.wrote(now);
    return undefined;
  }

  /** Sets or clears `spec.drain` on the node states that disagree with the Agent's selection. */
  async #markDrains(log: Logger): Promise<void> {
    for (const { node, drain } of this.#tally.drainMarks()) {
      const state = await this.#api.nodeStates.mergePatch(node, { spec: { drain } });
      this.#caches.nodeStates.learn(state);
      this.#tally.nodeState(node, state);
      log.info(
        drain ? "Node left the Agent's selection; drain set" : "Node selected; drain cleared",
        { node },
      );
    }
  }
}

/** The spec hash a rendered DaemonSet carries. */
function hashOf(daemonSet: Record<string, unknown>): string | undefined {
  const meta = daemonSet.metadata as { annotations?: Record<string, string> };
  return meta.annotations?.[SPEC_HASH_ANNOTATION];
}
