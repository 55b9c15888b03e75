/**
 * Members (Service keys) by IP address, ordered by address, so the members whose address lies in
 * a CIDR are a range query (log n + their number) instead of a scan: what an IPRule event needs
 * to find the Services its old and new CIDRs cover. The ordered map is js-sdsl's red-black tree.
 */
import { OrderedMap } from "@js-sdsl/ordered-map";
import type { ParsedCIDR, ParsedIP } from "../ip.ts";
import { eachMember, type Members, withMember, withoutMember } from "./members.ts";

/**
 * The sort key of an address: its family, then one character per byte, so string order is the
 * numeric order of addresses within a family.
 */
export function addressKey(ip: Pick<ParsedIP, "family" | "bytes">): string {
  return String(ip.family) + String.fromCharCode(...ip.bytes);
}

/** The keys of the first and the last address of a CIDR. */
function cidrBounds(cidr: ParsedCIDR): [string, string] {
  const last = cidr.bytes.map((b, i) => {
    const hostBits = Math.max(0, Math.min(8, (i + 1) * 8 - cidr.prefixLength));
    return b | ((1 << hostBits) - 1);
  });
  return [addressKey(cidr), addressKey({ family: cidr.family, bytes: last })];
}

/** Members by address key, ordered by address. */
export class AddressIndex {
  readonly #map = new OrderedMap<string, Members>();

  /** Records `member` at the address with key `key` (see `addressKey`). */
  add(key: string, member: string): void {
    const members = this.#map.getElementByKey(key);
    const next = withMember(members, member);
    if (next !== members) this.#map.setElement(key, next);
  }

  /** Removes `member` from the address with key `key`. */
  delete(key: string, member: string): void {
    const members = this.#map.getElementByKey(key);
    const next = withoutMember(members, member);
    if (next === undefined) this.#map.eraseElementByKey(key);
    else if (next !== members) this.#map.setElement(key, next);
  }

  /** Every member at an address inside the CIDR (a member at several of them, once each time). */
  *inCIDR(cidr: ParsedCIDR): Generator<string> {
    const [low, high] = cidrBounds(cidr);
    const end = this.#map.end();
    // js-sdsl iterators move in place: `next()` advances this one.
    for (const it = this.#map.lowerBound(low); !it.equals(end); it.next()) {
      const [key, members] = it.pointer;
      if (key > high) return;
      yield* eachMember(members);
    }
  }

  /** Number of distinct addresses. */
  get size(): number {
    return this.#map.size();
  }
}
