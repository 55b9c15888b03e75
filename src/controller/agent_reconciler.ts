/**
 * The Agent reconcile: Agent CR → DaemonSet `iprule-agent` (written only when its rendered
 * spec changes), Agent status, and the uninstall drain. A finalizer holds the Agent while
 * every IPRuleConfig is planned absent (the config reconciler reads `draining`), until each
 * node's agent reports no rule applied or the drain timeout passes; then the DaemonSet is
 * deleted and the finalizer removed.
 */
import { type Agent, AGENT_NAME, type IPRuleConfig, type IPRuleNodeState } from "../api/types.ts";
import { ApiError, type KubeClient } from "../k8s/client.ts";
import { isManagedConfig } from "./plan.ts";
import type { Informer } from "../k8s/informer.ts";
import { RESOURCES } from "../k8s/resources.ts";
import { apiTime } from "../k8s/time.ts";
import type { Logger } from "../log.ts";
import {
  agentStatus,
  type DaemonSetCounts,
  type NodeInfo,
  nodeList,
  sameAgentStatus,
  selectedNodes,
} from "./agent_status.ts";
import { setCondition } from "../api/conditions.ts";
import { DAEMONSET_NAME, renderDaemonSet, SPEC_HASH_ANNOTATION } from "./daemonset.ts";

/** Finalizer that makes an Agent's deletion remove every node's rules first. */
export const AGENT_FINALIZER = "api.operator.brtrm.dev/agent-cleanup";
/** How often a drain in progress is checked, ms. */
const DRAIN_POLL_MS = 1000;

/** A DaemonSet as far as the controller reads it. */
export interface DaemonSetInfo {
  hash: string | undefined;
  counts: DaemonSetCounts;
}

/** The caches an Agent reconcile reads. */
export interface AgentCaches {
  agents: Informer<Agent>;
  daemonSets: Informer<DaemonSetInfo>;
  nodes: Informer<NodeInfo>;
  nodeStates: Informer<IPRuleNodeState>;
  configs: Informer<IPRuleConfig>;
}

/** Reconciles the Agent CR of the operator's namespace. */
export class AgentReconciler {
  constructor(
    readonly client: KubeClient,
    readonly caches: AgentCaches,
    readonly options: {
      namespace: string;
      agentImage: string;
      drainTimeoutMs: number;
      log: Logger;
    },
  ) {}

  /** Whether every cache has synced. */
  get synced(): boolean {
    return Object.values(this.caches).every((c) => c.synced);
  }

  /** The Agent of our namespace, when it exists. */
  #agent(): Agent | undefined {
    return this.caches.agents.store.get(`${this.options.namespace}/${AGENT_NAME}`);
  }

  /** Whether an Agent exists (agents may run). */
  exists(): boolean {
    return this.#agent() !== undefined;
  }

  /** Whether the Agent is being deleted: every config must then be planned absent. */
  draining(): boolean {
    return this.#agent()?.metadata.deletionTimestamp !== undefined;
  }

  /** One reconcile; returns a delay after which to run again, if any. */
  async reconcile(reconcileID: string): Promise<number | undefined> {
    if (!this.synced) throw new Error("Caches not synced");
    const agent = this.#agent();
    if (!agent) return undefined; // its DaemonSet goes with it (owner reference)
    const log = this.options.log.with({ reconcileID, kind: "Agent", name: agent.metadata.name });
    const finalizers = agent.metadata.finalizers ?? [];
    if (agent.metadata.deletionTimestamp) {
      if (!finalizers.includes(AGENT_FINALIZER)) return undefined;
      return await this.#drain(agent, log);
    }
    if (!finalizers.includes(AGENT_FINALIZER)) {
      await this.client.mergePatch(RESOURCES.agents, agent.metadata.name, {
        metadata: {
          resourceVersion: agent.metadata.resourceVersion,
          finalizers: [...finalizers, AGENT_FINALIZER],
        },
      }, { namespace: this.options.namespace });
      log.info("Finalizer added");
    }

    const desired = renderDaemonSet(agent, { defaultImage: this.options.agentImage });
    const hash = (desired.metadata as { annotations: Record<string, string> })
      .annotations[SPEC_HASH_ANNOTATION];
    const current = this.caches.daemonSets.store.get(`${this.options.namespace}/${DAEMONSET_NAME}`);
    let invalidSpec: string | undefined;
    if (current?.hash !== hash) {
      try {
        await this.client.apply(RESOURCES.daemonSets, DAEMONSET_NAME, desired, {
          namespace: this.options.namespace,
        });
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
      nodes: [...this.caches.nodes.store.values()],
      states: this.#statesByNode(),
      ...(invalidSpec === undefined ? {} : { invalidSpec }),
    }, apiTime(Date.now()));
    if (!sameAgentStatus(agent.status, status)) {
      await this.client.mergePatch(RESOURCES.agents, agent.metadata.name, { status }, {
        namespace: this.options.namespace,
        subresource: "status",
      });
    }
    return undefined;
  }

  /**
   * Sets `spec.drain` on the IPRuleNodeState of every node outside the Agent's selection (and
   * clears it for selected ones): that node's agent removes its rules when the DaemonSet stops
   * it, instead of keeping them as it does on a restart.
   */
  async #markDrains(agent: Agent, log: Logger): Promise<void> {
    const selected = new Set(
      selectedNodes(agent, [...this.caches.nodes.store.values()]).map((n) => n.name),
    );
    for (const state of this.caches.nodeStates.store.values()) {
      const name = state.metadata.name;
      const drain = !selected.has(name);
      if ((state.spec?.drain ?? false) === drain) continue;
      await this.client.mergePatch(RESOURCES.ipRuleNodeStates, name, { spec: { drain } });
      log.info(
        drain ? "Node left the Agent's selection; drain set" : "Node selected; drain cleared",
        {
          node: name,
        },
      );
    }
  }

  #statesByNode(): Map<string, IPRuleNodeState> {
    return new Map([...this.caches.nodeStates.store.values()].map((s) => [s.metadata.name, s]));
  }

  async #drain(agent: Agent, log: Logger): Promise<number | undefined> {
    const started = Date.parse(agent.metadata.deletionTimestamp!);
    const present = [...this.caches.configs.store.values()].filter((c) =>
      c.spec.state === "present"
    );
    const busy = [...this.caches.nodeStates.store.values()]
      // desiredRules 0 shows the agent saw every config absent; appliedRules 0 that it acted.
      .filter((s) => (s.status?.desiredRules ?? 0) > 0 || (s.status?.appliedRules ?? 0) > 0)
      .map((s) => s.metadata.name);
    const elapsed = Date.now() - started;
    if ((present.length > 0 || busy.length > 0) && elapsed < this.options.drainTimeoutMs) {
      // Configs someone else created are never marked absent: their rules stay until deleted.
      const foreign = present.filter((c) => !isManagedConfig(c)).map((c) => c.metadata.name);
      const message = present.length > foreign.length
        ? `Marking ${present.length - foreign.length} IPRuleConfig(s) absent`
        : foreign.length > 0
        ? `Waiting: ${foreign.length} IPRuleConfig(s) not created by the operator are present ` +
          `(${nodeList(foreign)}); delete them to let the nodes remove every rule`
        : `Waiting for ${busy.length} node(s) to remove their rules: ${nodeList(busy)}`;
      await this.#setDraining(agent, "True", "Draining", message);
      return DRAIN_POLL_MS;
    }
    if (busy.length > 0) {
      log.warn("Drain timed out; nodes keep rules", { count: busy.length, nodes: nodeList(busy) });
      await this.#setDraining(
        agent,
        "False",
        "DrainTimedOut",
        `${busy.length} node(s) did not report their rules removed within ` +
          `${this.options.drainTimeoutMs} ms: ${nodeList(busy)}`,
      );
    }
    await this.client.delete(RESOURCES.daemonSets, DAEMONSET_NAME, {
      namespace: this.options.namespace,
    });
    await this.client.mergePatch(RESOURCES.agents, agent.metadata.name, {
      metadata: {
        resourceVersion: agent.metadata.resourceVersion,
        finalizers: (agent.metadata.finalizers ?? []).filter((f) => f !== AGENT_FINALIZER),
      },
    }, { namespace: this.options.namespace });
    log.info("Agent drained; DaemonSet deleted and finalizer removed", { elapsedMs: elapsed });
    return undefined;
  }

  async #setDraining(
    agent: Agent,
    status: "True" | "False",
    reason: string,
    message: string,
  ): Promise<void> {
    const existing = agent.status?.conditions?.find((c) => c.type === "Draining");
    if (existing?.status === status && existing.reason === reason && existing.message === message) {
      return;
    }
    const conditions = setCondition(agent.status?.conditions, {
      type: "Draining",
      status,
      reason,
      message,
    }, apiTime(Date.now()));
    await this.client.mergePatch(RESOURCES.agents, agent.metadata.name, {
      status: { conditions },
    }, { namespace: this.options.namespace, subresource: "status" });
  }
}
