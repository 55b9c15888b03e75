/**
 * The API-client metrics both executables expose, each under its own prefix
 * (`iprule_agent_…`, `iprule_controller_…`): one definition, so the names, help texts and labels
 * the dashboard and the alerts read cannot drift apart.
 */
import { Counter, Gauge, type Registry } from "prom-client";

/** `<prefix>_api_requests{verb}`: requests made since start, read from the client at each scrape. */
export function apiRequestsGauge(
  prefix: string,
  registry: Registry,
  read: () => ReadonlyMap<string, number>,
): Gauge<"verb"> {
  return new Gauge({
    name: `${prefix}_api_requests`,
    help: "API requests made since start, by HTTP verb",
    labelNames: ["verb"] as const,
    registers: [registry],
    collect() {
      for (const [verb, n] of read()) this.set({ verb }, n);
    },
  });
}

/** `<prefix>_api_responses_total{verb,code}`: responses by verb and status ("0": none came). */
export function apiResponsesCounter(prefix: string, registry: Registry): Counter<"verb" | "code"> {
  return new Counter({
    name: `${prefix}_api_responses_total`,
    help: 'API responses by HTTP verb and status code ("0": none arrived)',
    labelNames: ["verb", "code"] as const,
    registers: [registry],
  });
}
