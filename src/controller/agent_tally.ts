/**
 * What the Agent reconcile reads of the fleet, kept per event: each Node, IPRuleNodeState and
 * IPRuleConfig change updates that object's contribution to a few counts and sets in O(1), so
 * the Agent's status and the drain decisions cost the same with 5 nodes and with 5,000 (a scan
 * of every node state per event made a fleet's status writes quadratic for the controller).
 * Only a change of the Agent's node selection (its selector or tolerations) walks every node.
 *
 * Each update says whether anything the Agent reconcile reads changed: the informers queue the
 * reconcile only then, so a node's count changes that flip nothing cost no reconcile at all.
 */
import { type NameSample, nameSample } from "../api/conditions.ts";
import {
  type Agent,
  type IPRuleConfig,
  type IPRuleNodeState,
  isManagedConfig,
  type NodeInfo,
} from "../api/types.ts";
import { type DrainMark, drainMark, nodeHoldsRules } from "../drain.ts";
import { type FleetCounts, nodeAwaited, nodeConverged, nodeSelected } from "./agent_status.ts";
import { agentNodeSelector } from "./daemonset.ts";

/** One node's facts as the Agent reconcile counts them. */
interface NodeFacts {
  /** The DaemonSet keeps an agent on it. */
  selected: boolean;
  /** Selected, and the Agent's Ready condition waits for it. */
  awaited: boolean;
  /** Its IPRuleNodeState says Converged. */
  converged: boolean;
  /** Its IPRuleNodeState shows rules a drain waits on. */
  holds: boolean;
  /** Its IPRuleNodeState's `spec.drain` disagrees with the selection. */
  markOff: boolean;
}

const NO_FACTS: NodeFacts = {
  selected: false,
  awaited: false,
  converged: false,
  holds: false,
  markOff: false,
};

interface NodeEntry {
  info?: NodeInfo;
  state?: IPRuleNodeState;
  facts: NodeFacts;
}

function sameFacts(a: NodeFacts, b: NodeFacts): boolean {
  return a.selected === b.selected && a.awaited === b.awaited && a.converged === b.converged &&
    a.holds === b.holds && a.markOff === b.markOff;
}

/** The node selection of an Agent: what `nodeSelected` and `nodeAwaited` read of it. */
function selectionKey(agent: Agent | undefined): string {
  return agent === undefined
    ? ""
    : JSON.stringify([agentNodeSelector(agent.spec), agent.spec.tolerations ?? []]);
}

/** Counts of the nodes and configs the Agent reconcile reads, updated per event. */
export class AgentTally {
  readonly #nodes = new Map<string, NodeEntry>();
  #agent: Agent | undefined;
  #selection = "";
  #awaited = 0;
  /** Awaited nodes not converged. */
  readonly #waiting = new Set<string>();
  /** Nodes whose state shows rules. */
  readonly #busy = new Set<string>();
  /** Node states whose `spec.drain` is to change. */
  readonly #marksOff = new Set<string>();
  /** Present configs, and those of them the operator did not create. */
  readonly #present = new Set<string>();
  readonly #foreign = new Set<string>();

  /**
   * The Agent whose node selection counts (undefined: none). Walks every node only when its
   * selector or tolerations changed; returns whether a count changed.
   */
  agent(agent: Agent | undefined): boolean {
    this.#agent = agent;
    const key = selectionKey(agent);
    if (key === this.#selection) return false;
    this.#selection = key;
    let changed = false;
    for (const [name, entry] of this.#nodes) changed = this.#evaluate(name, entry) || changed;
    return changed;
  }

  /** A Node changed (undefined: deleted); returns whether a count changed. */
  node(name: string, info: NodeInfo | undefined): boolean {
    const entry = this.#entry(name);
    if (info === undefined) delete entry.info;
    else entry.info = info;
    return this.#evaluate(name, entry);
  }

  /** An IPRuleNodeState changed (undefined: deleted); returns whether a count changed. */
  nodeState(name: string, state: IPRuleNodeState | undefined): boolean {
    const entry = this.#entry(name);
    if (state === undefined) delete entry.state;
    else entry.state = state;
    return this.#evaluate(name, entry);
  }

  /** An IPRuleConfig changed (undefined: deleted); returns whether a count changed. */
  config(key: string, config: IPRuleConfig | undefined): boolean {
    const present = config?.spec.state === "present";
    const foreign = present && !isManagedConfig(config);
    const changed = this.#present.has(key) !== present || this.#foreign.has(key) !== foreign;
    toggle(this.#present, key, present);
    toggle(this.#foreign, key, foreign);
    return changed;
  }

  /** Selected nodes the Agent waits for, and those not converged. */
  get fleet(): FleetCounts {
    return { awaited: this.#awaited, waiting: nameSample(this.#waiting, this.#waiting.size) };
  }

  /** Nodes whose IPRuleNodeState shows rules. */
  get busyNodes(): NameSample {
    return nameSample(this.#busy, this.#busy.size);
  }

  /** IPRuleConfigs in state present. */
  get presentConfigs(): number {
    return this.#present.size;
  }

  /** Present IPRuleConfigs the operator did not create. */
  get foreignConfigs(): NameSample {
    return nameSample(this.#foreign, this.#foreign.size);
  }

  /** The `spec.drain` changes due (usually none: O(changes), not O(nodes)). */
  drainMarks(): DrainMark[] {
    const marks: DrainMark[] = [];
    for (const name of this.#marksOff) {
      const entry = this.#nodes.get(name);
      const mark = entry?.state && drainMark(entry.facts.selected, entry.state);
      if (mark) marks.push(mark);
    }
    return marks;
  }

  #entry(name: string): NodeEntry {
    let entry = this.#nodes.get(name);
    if (entry === undefined) {
      entry = { facts: NO_FACTS };
      this.#nodes.set(name, entry);
    }
    return entry;
  }

  /** Recomputes one node's facts and moves its contribution; true when they changed. */
  #evaluate(name: string, entry: NodeEntry): boolean {
    const { info, state } = entry;
    const agent = this.#agent;
    const selected = agent !== undefined && info !== undefined && nodeSelected(agent, info);
    const facts: NodeFacts = {
      selected,
      awaited: selected && nodeAwaited(agent!, info!, state !== undefined),
      converged: nodeConverged(state),
      holds: state !== undefined && nodeHoldsRules(state),
      markOff: state !== undefined && drainMark(selected, state) !== undefined,
    };
    const before = entry.facts;
    entry.facts = facts;
    if (info === undefined && state === undefined) this.#nodes.delete(name);
    if (sameFacts(before, facts)) return false;
    this.#awaited += Number(facts.awaited) - Number(before.awaited);
    toggle(this.#waiting, name, facts.awaited && !facts.converged);
    toggle(this.#busy, name, facts.holds);
    toggle(this.#marksOff, name, facts.markOff);
    return true;
  }
}

function toggle(set: Set<string>, key: string, member: boolean): void {
  if (member) set.add(key);
  else set.delete(key);
}
