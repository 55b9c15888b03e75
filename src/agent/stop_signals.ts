/**
 * What a stopping agent needs for the drain decision (src/drain.ts `stopAction`): its operator's
 * namespace and its Agent (being deleted or gone means an uninstall), its node's drain mark, and
 * whether the Agent still selects its node. Each is read again at stop; where that read fails,
 * the last state a watch showed stands in. The watches matter for an uninstall that deletes
 * everything at once (`kubectl delete -k deploy/`): by the time the Pod gets SIGTERM its
 * ServiceAccount, RBAC or the CRDs may be gone, but a watch opened before keeps delivering
 * until then, so the agent knows its namespace or Agent is being deleted. Without a namespace
 * (a local run, `--namespace` unset) nothing is watched and only the drain mark and selection
 * reads count.
 */
import { narrowAgent, narrowIPRuleNodeState, narrowNamespace, narrowNode } from "../api/narrow.ts";
import {
  type Agent,
  AGENT_NAME,
  type IPRuleNodeState,
  type NodeInfo,
  type ObjectMeta,
} from "../api/types.ts";
import { selectedNodes } from "../controller/agent_status.ts";
import { presenceOf, type StopInput } from "../drain.ts";
import { ApiError, type KubeClient } from "../k8s/client.ts";
import { Informer } from "../k8s/informer.ts";
import { type Resource, resourcePath, RESOURCES } from "../k8s/resources.ts";
import type { Logger } from "../log.ts";

/** How long the reads at stop may take together, ms (the Pod's grace period is 10 s). */
export const STOP_READ_TIMEOUT_MS = 2000;

/** One object as known at stop: `known: false` when neither a read nor a watch told. */
export type Known<T> = { known: true; object: T | undefined } | { known: false };

const UNKNOWN = { known: false } as const;

/** The read made at stop when it succeeded, else what the watch showed last. */
export function latest<T>(read: Known<T>, watched: Known<T>): Known<T> {
  return read.known ? read : watched;
}

/** What is known at stop of each object the decision reads. */
export interface StopKnowledge {
  namespace: Known<{ metadata: ObjectMeta }>;
  agent: Known<Agent>;
  nodeState: Known<IPRuleNodeState>;
  node: Known<NodeInfo>;
}

/**
 * The drain decision's input (fatal aside) from what is known: presences of the namespace and
 * the Agent, the drain mark (no IPRuleNodeState: not marked), and the live Agent's selection of
 * the node (unknown without both the Agent and the Node).
 */
export function stopInputOf(known: StopKnowledge): Omit<StopInput, "fatal"> {
  const { namespace, agent, nodeState, node } = known;
  const live = agent.known && agent.object !== undefined &&
      agent.object.metadata.deletionTimestamp === undefined
    ? agent.object
    : undefined;
  return {
    namespace: namespace.known ? presenceOf(namespace.object) : undefined,
    agent: agent.known ? presenceOf(agent.object) : undefined,
    drainMarked: nodeState.known ? nodeState.object?.spec?.drain ?? false : undefined,
    selected: live !== undefined && node.known && node.object !== undefined
      ? selectedNodes(live, [node.object]).length > 0
      : undefined,
  };
}

/** Options of {@linkcode StopSignals}. */
export interface StopSignalsOptions {
  /** The operator's namespace (where the Agent lives); undefined: watch nothing. */
  namespace: string | undefined;
  nodeName: string;
  log: Logger;
  /** Bound of the reads at stop, ms (default {@linkcode STOP_READ_TIMEOUT_MS}). */
  readTimeoutMs?: number;
}

/** Watches the namespace and the Agent while the agent runs; reads everything again at stop. */
export class StopSignals {
  readonly #client: KubeClient;
  readonly #options: StopSignalsOptions;
  readonly #namespace: Informer<{ metadata: ObjectMeta }> | undefined;
  readonly #agent: Informer<Agent> | undefined;

  constructor(client: KubeClient, options: StopSignalsOptions) {
    this.#client = client;
    this.#options = options;
    const ns = options.namespace;
    if (ns === undefined) return;
    const onError = (what: string) => (err: unknown, delayMs: number) =>
      options.log.debug(`${what} watch failed; its last state stands`, { err, delayMs });
    this.#namespace = new Informer(client, {
      resource: RESOURCES.namespaces,
      fieldSelector: `metadata.name=${ns}`,
      narrow: narrowNamespace,
      onError: onError("Namespace"),
    });
    this.#agent = new Informer(client, {
      resource: RESOURCES.agents,
      namespace: ns,
      fieldSelector: `metadata.name=${AGENT_NAME}`,
      narrow: narrowAgent,
      onError: onError("Agent"),
    });
  }

  /** Runs the watches until the signal aborts; their last state is kept for `read`. */
  async run(signal: AbortSignal): Promise<void> {
    await Promise.all([this.#namespace?.run(signal), this.#agent?.run(signal)]);
  }

  /** Resolves once both watches have listed (at once without a namespace), or on abort. */
  async whenWatching(signal?: AbortSignal): Promise<void> {
    await Promise.all([this.#namespace?.whenSynced(signal), this.#agent?.whenSynced(signal)]);
  }

  /** The drain decision's input, fatal aside: reads now, the watches where a read fails. */
  async read(): Promise<Omit<StopInput, "fatal">> {
    const { namespace, nodeName } = this.#options;
    const signal = AbortSignal.timeout(this.#options.readTimeoutMs ?? STOP_READ_TIMEOUT_MS);
    const get = <T>(resource: Resource, name: string, narrow: (raw: unknown) => T, ns?: string) =>
      this.#get(resource, { name, ...(ns === undefined ? {} : { namespace: ns }) }, narrow, signal);
    const [nsRead, agentRead, nodeState, node] = await Promise.all([
      namespace === undefined ? UNKNOWN : get(RESOURCES.namespaces, namespace, narrowNamespace),
      namespace === undefined ? UNKNOWN : get(RESOURCES.agents, AGENT_NAME, narrowAgent, namespace),
      get(RESOURCES.ipRuleNodeStates, nodeName, narrowIPRuleNodeState),
      get(RESOURCES.nodes, nodeName, narrowNode),
    ]);
    return stopInputOf({
      namespace: latest(nsRead, watched(this.#namespace, namespace ?? "")),
      agent: latest(agentRead, watched(this.#agent, `${namespace}/${AGENT_NAME}`)),
      nodeState,
      node,
    });
  }

  /** One GET within the signal; not found is known (no object), any other failure unknown. */
  async #get<T>(
    resource: Resource,
    where: { name: string; namespace?: string },
    narrow: (raw: unknown) => T,
    signal: AbortSignal,
  ): Promise<Known<T>> {
    try {
      return {
        known: true,
        object: narrow(
          await this.#client.request("GET", resourcePath(resource, where), { signal }),
        ),
      };
    } catch (error: unknown) {
      if (objectNotFound(error, where.name)) return { known: true, object: undefined };
      this.#options.log.debug("Read at stop failed; the last watched state stands", {
        kind: resource.kind,
        name: where.name,
        err: error,
      });
      return UNKNOWN;
    }
  }
}

/**
 * Whether the API server said that this object does not exist. Not any 404: one for the kind
 * itself (a CRD deleted, or not served yet while an API server starts) says nothing about the
 * object, and the watch, which saw what happened before, decides then.
 */
export function objectNotFound(error: unknown, name: string): boolean {
  // apimachinery's NotFound message: `<resource> "<name>" not found`.
  return error instanceof ApiError && error.status === 404 && error.reason === "NotFound" &&
    error.message.endsWith(`"${name}" not found`);
}

/** What a watch last showed of one object; unknown before its first list. */
function watched<T>(informer: Informer<T> | undefined, key: string): Known<T> {
  if (informer === undefined || !informer.synced) return UNKNOWN;
  return { known: true, object: informer.store.get(key) };
}
