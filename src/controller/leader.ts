/**
 * Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection: acquire
 * when the lease is free or expired (judged by when this replica last saw it change, so clocks
 * need not agree), renew every retry period, step down when renewals fail for the renew
 * deadline, release on shutdown so a standby takes over at once.
 */
import type { Lease, LeaseSpec } from "../api/types.ts";
import { ApiError } from "../k8s/client.ts";
import type { Objects } from "../k8s/objects.ts";
import { microTime } from "../k8s/time.ts";
import { sleep } from "../k8s/backoff.ts";
import type { Logger } from "../log.ts";

/** How a replica competes for the lease. */
export interface LeaderOptions {
  namespace: string;
  leaseName: string;
  identity: string;
  leaseDurationMs: number;
  log: Logger;
  /** Called with the leader's state on every change. */
  onChange?: (leading: boolean) => void;
}

/** The Lease reads and writes of leader election (in the lease's namespace). */
export type LeaseObjects = Pick<Objects<Lease>, "get" | "create" | "replace">;

/** Competes for the lease; runs `lead` while holding it. */
export class LeaderElector {
  readonly #leases: LeaseObjects;
  readonly #o: LeaderOptions;
  #observed: { record: string; at: number } | undefined;

  constructor(leases: LeaseObjects, options: LeaderOptions) {
    this.#leases = leases;
    this.#o = options;
  }

  get #retryMs(): number {
    return Math.max(200, Math.floor(this.#o.leaseDurationMs / 5));
  }

  get #renewDeadlineMs(): number {
    return Math.floor(this.#o.leaseDurationMs * 2 / 3);
  }

  /**
   * Waits for the lease, then runs `lead` with a signal that aborts when leadership is lost
   * or `signal` aborts. Resolves when `lead` has returned (leadership lost or shutdown).
   */
  async run(signal: AbortSignal, lead: (signal: AbortSignal) => Promise<void>): Promise<void> {
    while (!signal.aborted && !(await this.#tryAcquireOrRenew())) {
      await sleep(this.#retryMs, signal);
    }
    if (signal.aborted) return;
    this.#o.log.info("Leader lease acquired", {
      lease: this.#o.leaseName,
      identity: this.#o.identity,
    });
    this.#o.onChange?.(true);
    const leading = new AbortController();
    const stop = () => leading.abort();
    signal.addEventListener("abort", stop, { once: true });
    const work = lead(leading.signal);
    // Steps down when no renewal succeeded for the renew deadline, even while a renewal is
    // still waiting for an answer (an overloaded API server, a half-open connection): by then
    // a standby may hold the lease.
    const lost = () => {
      if (leading.signal.aborted) return;
      this.#o.log.error("Leader lease lost", { lease: this.#o.leaseName });
      leading.abort();
    };
    let deadline = setTimeout(lost, this.#renewDeadlineMs);
    while (!leading.signal.aborted) {
      await sleep(this.#retryMs, leading.signal);
      if (leading.signal.aborted) break;
      if (await this.#tryAcquireOrRenew() && !leading.signal.aborted) {
        clearTimeout(deadline);
        deadline = setTimeout(lost, this.#renewDeadlineMs);
      }
    }
    clearTimeout(deadline);
    signal.removeEventListener("abort", stop);
    await work;
    this.#o.onChange?.(false);
    if (signal.aborted) await this.#release();
  }

  #get(): Promise<Lease | undefined> {
    return this.#leases.get(this.#o.leaseName);
  }

  async #tryAcquireOrRenew(): Promise<boolean> {
    const now = Date.now();
    const spec: LeaseSpec = {
      holderIdentity: this.#o.identity,
      leaseDurationSeconds: Math.ceil(this.#o.leaseDurationMs / 1000),
      acquireTime: microTime(now),
      renewTime: microTime(now),
      leaseTransitions: 0,
    };
    try {
      const lease = await this.#get();
      if (!lease) {
        await this.#leases.create({
          metadata: { name: this.#o.leaseName, namespace: this.#o.namespace },
          spec,
        });
        return true;
      }
      const old = lease.spec;
      const record = JSON.stringify(old);
      if (this.#observed?.record !== record) this.#observed = { record, at: now };
      const held = old.holderIdentity && old.holderIdentity !== this.#o.identity;
      const expiresAt = this.#observed.at + (old.leaseDurationSeconds ?? 0) * 1000;
      if (held && expiresAt > now) return false;
      if (old.holderIdentity === this.#o.identity) {
        spec.acquireTime = old.acquireTime ?? spec.acquireTime!;
        spec.leaseTransitions = old.leaseTransitions ?? 0;
      } else {
        spec.leaseTransitions = (old.leaseTransitions ?? 0) + 1;
      }
      await this.#leases.replace(this.#o.leaseName, {
        metadata: {
          name: this.#o.leaseName,
          namespace: this.#o.namespace,
          resourceVersion: lease.metadata.resourceVersion,
        },
        spec,
      });
      this.#observed = { record: JSON.stringify(spec), at: now };
      return true;
    } catch (err: unknown) {
      if (!(err instanceof ApiError && err.status === 409)) {
        this.#o.log.warn("Leader lease not renewed", { lease: this.#o.leaseName, err });
      }
      return false;
    }
  }

  /** Gives the lease up so a standby replica takes over without waiting for expiry. */
  async #release(): Promise<void> {
    try {
      const lease = await this.#get();
      if (lease?.spec?.holderIdentity !== this.#o.identity) return;
      await this.#leases.replace(this.#o.leaseName, {
        metadata: {
          name: this.#o.leaseName,
          namespace: this.#o.namespace,
          resourceVersion: lease.metadata.resourceVersion,
        },
        spec: { ...lease.spec, holderIdentity: "", leaseDurationSeconds: 1 },
      });
      this.#o.log.info("Leader lease released", { lease: this.#o.leaseName });
    } catch (err: unknown) {
      this.#o.log.warn("Leader lease not released", { lease: this.#o.leaseName, err });
    }
  }
}
