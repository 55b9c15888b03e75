import assert from "node:assert/strict";
import { configName, parseCIDR, parseIP, prefixKey } from "./ip.ts";

Deno.test("parseIP() accepts dotted quads and IPv6, gives canonical text", () => {
  assert.deepEqual(parseIP("10.96.1.50")?.text, "10.96.1.50");
  assert.equal(parseIP("FD00:0:0::01")?.text, "fd00::1");
  assert.equal(parseIP("fd00::1")?.family, 6);
});

Deno.test("parseIP() reads a trailing dotted quad of IPv6 text as its last 32 bits", () => {
  // ipaddr.js alone reads "::1.2.3.4" as the IPv4-mapped ::ffff:102:304: another address.
  assert.equal(parseIP("::1.2.3.4")?.text, "::102:304");
  assert.deepEqual(parseIP("::1.2.3.4")?.bytes, [...Array(12).fill(0), 1, 2, 3, 4]);
  assert.equal(parseIP("::ffff:1.2.3.4")?.text, "::ffff:102:304");
  assert.equal(parseIP("64:ff9b::10.0.0.5")?.text, "64:ff9b::a00:5");
  assert.equal(parseIP("1:2:3:4:5:6:1.2.3.4")?.text, "1:2:3:4:5:6:102:304");
  for (
    const bad of ["::1.2.3", "::1.2.3.256", "::01.2.3.4", "1.2.3.4::", "1:2:3:4:5:6:7:1.2.3.4"]
  ) {
    assert.equal(parseIP(bad), undefined, bad);
  }
});

Deno.test("parseIP() refuses anything but a plain address", () => {
  for (const bad of ["", "10.1", "010.1.1.1", "1.2.3.256", "fe80::1%eth0", "::g", "host"]) {
    assert.equal(parseIP(bad), undefined, bad);
  }
});

Deno.test("parseCIDR() accepts canonical CIDRs of both families", () => {
  const v4 = parseCIDR("192.168.1.0/24");
  assert.ok(typeof v4 === "object");
  assert.equal(v4.text, "192.168.1.0/24");
  const v6 = parseCIDR("fd00:10::/64");
  assert.ok(typeof v6 === "object");
  assert.equal(v6.prefixLength, 64);
  assert.ok(typeof parseCIDR("0.0.0.0/0") === "object");
  assert.ok(typeof parseCIDR("::/0") === "object");
});

Deno.test("parseCIDR() tells invalid CIDRs from CIDRs with host bits", () => {
  assert.equal(parseCIDR("192.168.1.5/24"), "host-bits");
  assert.equal(parseCIDR("fd00::1/64"), "host-bits");
  for (const bad of ["192.168.1.0", "192.168.1.0/33", "fd00::/129", "x/8", "10.0.0.0/08", "/8"]) {
    assert.equal(parseCIDR(bad), "invalid", bad);
  }
});

Deno.test("prefixKey() is equal for an address and the CIDR containing it", () => {
  const ip = parseIP("192.168.1.77")!;
  const cidr = parseCIDR("192.168.1.64/26");
  assert.ok(typeof cidr === "object");
  assert.equal(prefixKey(4, ip.bytes, 26), prefixKey(4, cidr.bytes, 26));
  assert.notEqual(prefixKey(4, parseIP("192.168.1.10")!.bytes, 26), prefixKey(4, cidr.bytes, 26));
});

Deno.test("configName() turns IPv4 dots and expanded IPv6 groups into dashes", () => {
  assert.equal(configName(parseIP("10.96.1.50")!), "iprc-10-96-1-50");
  assert.equal(configName(parseIP("fd00::1")!), "iprc-fd00-0-0-0-0-0-0-1");
  assert.equal(configName(parseIP("2001:db8:0:0:1::ab")!), "iprc-2001-db8-0-0-1-0-0-ab");
  assert.equal(configName(parseIP("::")!), "iprc-0-0-0-0-0-0-0-0");
});
