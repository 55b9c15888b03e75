import assert from "node:assert/strict";
import { parseCIDR, type ParsedCIDR, parseIP } from "../ip.ts";
import { AddressIndex, addressKey } from "./address_index.ts";

const key = (ip: string) => addressKey(parseIP(ip)!);
const cidr = (text: string) => parseCIDR(text) as ParsedCIDR;

function index(entries: [string, string][]): AddressIndex {
  const i = new AddressIndex();
  for (const [ip, member] of entries) i.add(key(ip), member);
  return i;
}

Deno.test("AddressIndex.inCIDR() finds the members inside a CIDR, its first and last address included", () => {
  const i = index([
    ["10.1.0.255", "before"],
    ["10.1.1.0", "first"],
    ["10.1.1.77", "middle"],
    ["10.1.1.255", "last"],
    ["10.1.2.0", "after"],
    ["fd00::1", "v6"],
  ]);
  assert.deepEqual([...i.inCIDR(cidr("10.1.1.0/24"))], ["first", "middle", "last"]);
  assert.deepEqual([...i.inCIDR(cidr("10.1.1.77/32"))], ["middle"]);
  assert.deepEqual([...i.inCIDR(cidr("10.1.1.128/25"))], ["last"]);
  assert.deepEqual([...i.inCIDR(cidr("0.0.0.0/0"))], [
    "before",
    "first",
    "middle",
    "last",
    "after",
  ]);
  assert.deepEqual([...i.inCIDR(cidr("::/0"))], ["v6"]);
  assert.deepEqual([...i.inCIDR(cidr("fd00::/127"))], ["v6"]);
  assert.deepEqual([...i.inCIDR(cidr("fd00::2/127"))], []);
});

Deno.test("AddressIndex keeps every member of a shared address until the last one goes", () => {
  const i = index([["192.168.1.10", "a"], ["192.168.1.10", "b"], ["192.168.1.11", "c"]]);
  assert.deepEqual([...i.inCIDR(cidr("192.168.1.10/32"))].sort(), ["a", "b"]);
  i.delete(key("192.168.1.10"), "a");
  assert.deepEqual([...i.inCIDR(cidr("192.168.1.0/24"))], ["b", "c"]);
  i.delete(key("192.168.1.10"), "b");
  i.delete(key("192.168.1.10"), "b"); // twice: nothing left to remove
  assert.deepEqual([...i.inCIDR(cidr("192.168.1.0/24"))], ["c"]);
  assert.equal(i.size, 1);
});

Deno.test("addressKey() orders addresses numerically within a family", () => {
  const ips = ["10.0.0.9", "10.0.0.10", "9.255.255.255", "10.0.1.0", "255.255.255.255"];
  assert.deepEqual(
    ips.map(key).sort().map((k) => ips.find((ip) => key(ip) === k)),
    ["9.255.255.255", "10.0.0.9", "10.0.0.10", "10.0.1.0", "255.255.255.255"],
  );
  assert.ok(key("fd00::a") < key("fd00::1:0"));
});
