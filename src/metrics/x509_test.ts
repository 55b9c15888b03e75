import assert from "node:assert/strict";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { oid, selfSignedPem } from "./x509.ts";

Deno.test("oid() encodes arcs in base 128 as DER", () => {
  // ecdsa-with-SHA256 and serverAuth, as RFC 5758 and RFC 5280 print them.
  assert.deepEqual([...oid("1.2.840.10045.4.3.2")], [
    0x06,
    0x08,
    0x2a,
    0x86,
    0x48,
    0xce,
    0x3d,
    0x04,
    0x03,
    0x02,
  ]);
  assert.deepEqual([...oid("1.3.6.1.5.5.7.3.1")], [
    0x06,
    0x08,
    0x2b,
    0x06,
    0x01,
    0x05,
    0x05,
    0x07,
    0x03,
    0x01,
  ]);
});

Deno.test("selfSignedPem() makes a v3 server certificate node:crypto parses and verifies", async () => {
  const before = Date.now();
  const { cert, key } = await selfSignedPem(["node-1", "10.0.0.7", "fd00::7", "localhost"], 365);
  const x509 = new X509Certificate(cert);
  assert.equal(x509.subject, "CN=node-1");
  assert.equal(x509.issuer, "CN=node-1");
  assert.equal(
    x509.subjectAltName,
    "DNS:node-1, IP Address:10.0.0.7, IP Address:fd00::7, DNS:localhost",
  );
  assert.equal(x509.ca, false);
  // Deno's X509Certificate reports the keyUsage extension here (Node's, extKeyUsage); rustls,
  // which checks extKeyUsage serverAuth, completes a handshake with it in endpoints_test.ts.
  assert.deepEqual(x509.keyUsage, ["DigitalSignature"]);
  assert.ok(x509.verify(x509.publicKey), "signed by its own key");
  assert.ok(x509.checkPrivateKey(createPrivateKey(key)));
  assert.equal(x509.publicKey.asymmetricKeyDetails?.namedCurve, "prime256v1");
  const from = Date.parse(x509.validFrom);
  const to = Date.parse(x509.validTo);
  assert.ok(from <= before && from > before - 120_000, x509.validFrom);
  assert.ok(Math.abs(to - before - 365 * 86_400_000) < 120_000, x509.validTo);
  // 16 bytes, positive, first byte 0x01..0x7f (node:crypto prints no leading zero digit).
  const serial = BigInt(`0x${x509.serialNumber}`);
  assert.ok(serial >= 1n << 120n && serial < 1n << 127n, x509.serialNumber);
  const other = new X509Certificate((await selfSignedPem(["node-1"], 1)).cert);
  assert.notEqual(other.serialNumber, x509.serialNumber);
});
