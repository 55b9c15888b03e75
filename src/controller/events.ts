/**
 * Records events.k8s.io/v1 Events for what a user must see, once per distinct message: the
 * planner reports the same conflicts on every reconcile, so repeats are dropped here.
 */
import type { KubeClient } from "../k8s/client.ts";
import { RESOURCES } from "../k8s/resources.ts";
import { microTime } from "../k8s/time.ts";
import { API_VERSION } from "../api/types.ts";
import type { Logger } from "../log.ts";

/** An Event for a user, about one object (the planner's `PlanEvent` is one). */
export interface UserEvent {
  regarding: { kind: string; name: string; namespace?: string };
  type: "Normal" | "Warning";
  reason: string;
  note: string;
}

/** Reporting controller name of our Events. */
export const REPORTING_CONTROLLER = "ip-rule-operator.brtrm.dev/controller";
/** Namespace of Events about cluster-scoped objects. */
const CLUSTER_EVENT_NAMESPACE = "default";
/** Most distinct event keys remembered (older ones may be recorded again). */
const MEMORY = 10_000;

function regardingApiVersion(kind: string): string {
  return kind === "Service" ? "v1" : API_VERSION;
}

function eventSuffix(): string {
  return Date.now().toString(16) + crypto.randomUUID().slice(0, 4);
}

/** Longest object name (DNS subdomain). */
const MAX_NAME = 253;

/**
 * An Event's name as client-go makes it: the object's name, a dot, a unique suffix; the object's
 * name cut so the whole stays a valid name (an IPRule's name may itself be 253 characters).
 */
export function eventName(objectName: string, suffix = eventSuffix()): string {
  const room = MAX_NAME - suffix.length - 1;
  const base = objectName.slice(0, room).replace(/[.-]+$/, "");
  return `${base || "event"}.${suffix}`;
}

/** Writes Events, skipping one identical to the last recorded for the same object and reason. */
export class EventRecorder {
  readonly #client: KubeClient;
  readonly #instance: string;
  readonly #log: Logger;
  readonly #last = new Map<string, string>();

  constructor(client: KubeClient, instance: string, log: Logger) {
    this.#client = client;
    this.#instance = instance;
    this.#log = log;
  }

  /** Records the events not recorded before; failures are logged, never thrown. */
  async record(events: readonly UserEvent[]): Promise<void> {
    for (const event of events) {
      const { kind, namespace, name } = event.regarding;
      const key = `${kind}/${namespace ?? ""}/${name}/${event.reason}`;
      if (this.#last.get(key) === event.note) continue;
      // Remembered before the write: a failing write (RBAC, API down) is logged once per note,
      // not on every reconcile.
      this.#last.delete(key);
      this.#last.set(key, event.note);
      if (this.#last.size > MEMORY) this.#last.delete(this.#last.keys().next().value!);
      const eventNamespace = namespace ?? CLUSTER_EVENT_NAMESPACE;
      try {
        await this.#client.create(RESOURCES.events, {
          metadata: { name: eventName(name), namespace: eventNamespace },
          eventTime: microTime(Date.now()),
          reportingController: REPORTING_CONTROLLER,
          reportingInstance: this.#instance,
          action: "Reconcile",
          reason: event.reason,
          note: event.note.slice(0, 1024),
          type: event.type,
          regarding: {
            apiVersion: regardingApiVersion(kind),
            kind,
            name,
            ...(namespace ? { namespace } : {}),
          },
        }, eventNamespace);
      } catch (err: unknown) {
        this.#log.warn("Event not recorded", { reason: event.reason, kind, name, err });
      }
    }
  }
}
