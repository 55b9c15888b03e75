/**
 * The soak's seeded randomness: pure-rand's xoroshiro128+ behind the few draws the soak makes.
 * Each consumer (fault schedule, churn) gets its own stream split off by a jump, so a change in
 * how many numbers one of them draws never shifts the other's sequence.
 */
import { uniformFloat64 } from "pure-rand/distribution/uniformFloat64";
import { uniformInt } from "pure-rand/distribution/uniformInt";
import { xoroshiro128plus } from "pure-rand/generator/xoroshiro128plus";
import type { JumpableRandomGenerator } from "pure-rand/types/JumpableRandomGenerator";

/** Largest seed accepted: seeds are unsigned 32-bit integers, printed so a run can be repeated. */
export const MAX_SEED = 0xffff_ffff;

/** A seeded random stream. */
export class Random {
  readonly #rng: JumpableRandomGenerator;

  /** A stream from `seed` (0..2^32-1). */
  constructor(seed: number | JumpableRandomGenerator) {
    if (typeof seed === "number") {
      if (!Number.isInteger(seed) || seed < 0 || seed > MAX_SEED) {
        throw new RangeError(`Invalid seed "${seed}": expected an integer 0..${MAX_SEED}`);
      }
      this.#rng = xoroshiro128plus(seed | 0);
    } else {
      this.#rng = seed;
    }
  }

  /** An independent stream 2^64 draws ahead; this stream moves on past it too. */
  split(): Random {
    this.#rng.jump();
    const other = this.#rng.clone();
    this.#rng.jump();
    return new Random(other);
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return uniformInt(this.#rng, min, max);
  }

  /** A float in [0, 1). */
  float(): number {
    return uniformFloat64(this.#rng);
  }

  /** A float in [min, max). */
  between(min: number, max: number): number {
    return min + (max - min) * this.float();
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.float() < p;
  }

  /** One element of a non-empty list. */
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError("Cannot pick from an empty list");
    return items[this.int(0, items.length - 1)]!;
  }

  /** An exponentially distributed delay with the given mean (gaps of a Poisson process). */
  exponential(mean: number): number {
    return -mean * Math.log(1 - this.float());
  }
}

/** A random seed for a run that was given none. */
export function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0]!;
}
