import assert from "node:assert/strict";
import ipaddr from "ipaddr.js";
import { canonicalAddress, formatAddress, parseAddress, parseIPv4, parseIPv6 } from "./address.ts";

Deno.test("formatAddress() prints IPv6 exactly as ipaddr.js toString()", () => {
  const samples = [
    "::",
    "::1",
    "fd00::1",
    "2001:db8::1:0:0:1",
    "2001:db8:0:0:1:0:0:1",
    "2001:0:0:1:0:0:0:1",
    "1:0:0:0:0:0:0:0",
    "0:0:1:0:0:0:0:0",
    "1:2:3:4:5:6:7:8",
    "1:0:3:4:5:6:7:0",
    "fe80::abcd:ef01",
    "::ffff:1.2.3.4",
    "ABCD::EF",
  ];
  for (const text of samples) {
    const bytes = Uint8Array.from(ipaddr.IPv6.parse(text).toByteArray());
    assert.equal(formatAddress(bytes, 0, 6), ipaddr.IPv6.parse(text).toString(), text);
  }
});

Deno.test("formatAddress() prints IPv4 as dotted decimal at an offset", () => {
  assert.equal(formatAddress(Uint8Array.of(9, 10, 0, 255, 1), 1, 4), "10.0.255.1");
});

Deno.test("parseAddress() returns network-order bytes", () => {
  assert.deepEqual(parseAddress("10.1.2.3", 4), Uint8Array.of(10, 1, 2, 3));
  assert.deepEqual(
    parseAddress("fd00::1", 6),
    Uint8Array.of(0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1),
  );
});

Deno.test("parseAddress() rejects malformed and wrong-family addresses", () => {
  for (
    const text of [
      "",
      "10.1.2",
      "10.1.2.3.4",
      "10.1.2.256",
      "010.1.2.3",
      "10.1.2.x",
      "fd00::1",
      " 10.1.2.3",
    ]
  ) {
    assert.equal(parseAddress(text, 4), undefined, text);
  }
  for (const text of ["", "10.1.2.3", "fd00:::1", "fe80::1%eth0", "1:2:3:4:5:6:7:8:9", "g::1"]) {
    assert.equal(parseAddress(text, 6), undefined, text);
  }
});

Deno.test("canonicalAddress() shortens IPv6 per RFC 5952 and keeps IPv4", () => {
  assert.equal(canonicalAddress("FD00:0000:0000::0001", 6), "fd00::1");
  assert.equal(canonicalAddress("10.0.0.1", 4), "10.0.0.1");
  assert.equal(canonicalAddress("10.0.0.1", 6), undefined);
});

Deno.test("parseAddress() reads an IPv6 text's trailing dotted quad as its last 32 bits", () => {
  // ipaddr.js alone reads "::1.2.3.4" as the IPv4-mapped ::ffff:102:304: another address.
  assert.deepEqual(
    parseAddress("::1.2.3.4", 6),
    Uint8Array.from([...Array(12).fill(0), 1, 2, 3, 4]),
  );
  assert.equal(canonicalAddress("::ffff:10.0.0.5", 6), "::ffff:a00:5");
  assert.equal(canonicalAddress("64:ff9b::10.0.0.5", 6), "64:ff9b::a00:5");
  for (const bad of ["::1.2.3", "::1.2.3.256", "::01.2.3.4", "fe80::1%eth0"]) {
    assert.equal(parseAddress(bad, 6), undefined, bad);
  }
});

Deno.test("parseIPv4() reads strict dotted quads as one network-order number", () => {
  assert.equal(parseIPv4("10.96.1.50"), 0x0a600132);
  assert.equal(parseIPv4("255.255.255.255"), 0xffffffff);
  assert.equal(parseIPv4("0.0.0.0"), 0);
  for (
    const bad of [
      "",
      "1.2.3",
      "1.2.3.4.",
      ".1.2.3.4",
      "1..2.3",
      "01.2.3.4",
      "1.2.3.0256",
      "1.2.3.256",
    ]
  ) {
    assert.equal(parseIPv4(bad), -1, bad);
  }
  for (const bad of ["1.2.3.4 ", "1.2.3.4/8", "1.2.3.-4", "a.b.c.d", "1.2.3.4.5", "1234.1.1.1"]) {
    assert.equal(parseIPv4(bad), -1, bad);
  }
});

Deno.test("parseIPv6() gives the bytes and the text ipaddr.js gives", () => {
  for (const text of ["fd00::1", "FD00:0:0::01", "2001:db8:0:0:1::ab", "::", "::ffff:a00:5"]) {
    const address = ipaddr.IPv6.parse(text);
    assert.deepEqual(parseIPv6(text), { bytes: address.toByteArray(), text: address.toString() });
  }
  for (const bad of ["10.1.2.3", "fe80::1%eth0", "::g", "1.2.3.4::", ""]) {
    assert.equal(parseIPv6(bad), undefined, bad);
  }
});
