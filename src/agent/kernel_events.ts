/**
 * The kernel's rule events for the agent: a netlink subscription (`ip monitor rule`) whose
 * events go to the node agent with whether its own socket made the change; lost events, and a
 * subscription reopened after a failure (with backoff), ask for a dump.
 */
import { type RuleChange, RuleSubscription } from "../../ffi/mod.ts";
import { backoffDelay, sleep } from "../k8s/backoff.ts";
import type { Logger } from "../log.ts";
import type { AgentMetrics } from "./metrics.ts";

/** Where the events go (a `NodeAgent`). */
export interface KernelEventSink {
  kernelChanged(change: RuleChange, own: boolean): void;
  eventsLost(): void;
}

/** Options of `watchKernel`. */
export interface KernelWatchOptions {
  /** libmnl path. */
  libraryPath: string;
  /** Port id of the agent's own rule socket: its changes are "own". */
  ownPortId: number;
  signal: AbortSignal;
  log: Logger;
  metrics: AgentMetrics;
}

/** Feeds the kernel's rule events to `sink` until the signal aborts. */
export async function watchKernel(
  sink: KernelEventSink,
  options: KernelWatchOptions,
): Promise<void> {
  const { signal, log, metrics } = options;
  let attempt = 0;
  while (!signal.aborted) {
    try {
      await using subscription = RuleSubscription.open({
        libraryPath: options.libraryPath,
        signal,
      });
      if (attempt > 0) sink.eventsLost(); // events may have been missed while it was closed
      for await (const event of subscription) {
        attempt = 0;
        if (event.type === "resync") {
          metrics.kernelEvents.inc({ type: "resync", origin: "other" });
          log.info("Rule events lost; dumping the rules again", { reason: event.reason });
          sink.eventsLost();
          continue;
        }
        const own = event.portId === options.ownPortId;
        metrics.kernelEvents.inc({ type: event.type, origin: own ? "self" : "other" });
        sink.kernelChanged(event, own);
      }
    } catch (error: unknown) {
      if (signal.aborted) break;
      const delayMs = backoffDelay(attempt++);
      log.error("Rule subscription failed; periodic resync only until it is back", {
        err: error,
        delayMs,
      });
      await sleep(delayMs, signal);
    }
  }
}
