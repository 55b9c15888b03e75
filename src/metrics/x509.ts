/**
 * A self-signed X.509 v3 server certificate (ECDSA P-256, SHA-256) built with WebCrypto and a
 * minimal DER encoder.
 *
 * Hand-written on purpose: with client-node already loaded, as in the agent, `selfsigned`
 * (over @peculiar/x509, pkijs and a global reflect-metadata polyfill) added 11.9 MB of RSS, this
 * module 5.8 MB (mostly WebCrypto's own), measured under Deno 2.9; the agent runs under a
 * 128 MiB limit on every node. The one
 * certificate shape needed here is fixed (RFC 5280 §4.1: version 3, serial, ecdsa-with-SHA256,
 * CN, validity, SubjectPublicKeyInfo from WebCrypto, basicConstraints, keyUsage, extKeyUsage
 * serverAuth, subjectAltName), so the encoder covers only the DER types it uses. The unit tests
 * parse the result with node:crypto's X509Certificate and complete a TLS handshake with it.
 *
 * @module
 */
import ipaddr from "ipaddr.js";

/** Bytes backed by a plain ArrayBuffer, as WebCrypto takes them. */
type Bytes = Uint8Array<ArrayBuffer>;

/** A PEM certificate and its PEM (PKCS #8) private key. */
export interface PemPair {
  cert: string;
  key: string;
}

/** One DER element: tag byte, then the definite length, then the content. */
function der(tag: number, content: Bytes): Bytes {
  const n = content.length;
  const length = n < 0x80
    ? [n]
    : n < 0x100
    ? [0x81, n]
    : n < 0x10000
    ? [0x82, n >> 8, n & 0xff]
    : [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff];
  const out = new Uint8Array(1 + length.length + n);
  out[0] = tag;
  out.set(length, 1);
  out.set(content, 1 + length.length);
  return out;
}

function concat(parts: readonly Bytes[]): Bytes {
  const out = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

const sequence = (...items: Bytes[]) => der(0x30, concat(items));
const set = (...items: Bytes[]) => der(0x31, concat(items));
const octets = (bytes: Bytes) => der(0x04, bytes);
const utf8 = (text: string) => der(0x0c, new TextEncoder().encode(text));
/** A BIT STRING of whole bytes with `unused` bits unused in the last one. */
const bits = (bytes: Bytes, unused = 0) => der(0x03, concat([new Uint8Array([unused]), bytes]));
/** [n] EXPLICIT. */
const explicit = (n: number, inner: Bytes) => der(0xa0 | n, inner);

/** An INTEGER from unsigned big-endian bytes (a leading 0 keeps it positive). */
function integer(bytes: Bytes): Bytes {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  const trimmed = bytes.subarray(start);
  return der(0x02, trimmed[0]! & 0x80 ? concat([new Uint8Array([0]), trimmed]) : trimmed);
}

/** An OBJECT IDENTIFIER from its dotted form. */
export function oid(dotted: string): Bytes {
  const [first, second, ...rest] = dotted.split(".").map(Number);
  const bytes: number[] = [];
  for (const arc of [first! * 40 + second!, ...rest]) {
    const chunk = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) {
      chunk.unshift((v & 0x7f) | 0x80);
    }
    bytes.push(...chunk);
  }
  return der(0x06, new Uint8Array(bytes));
}

/** UTCTime (YYMMDDHHMMSSZ), valid for years 1950-2049 as RFC 5280 requires. */
function utcTime(date: Date): Bytes {
  const text = date.toISOString().replace(/[-:T]/g, "").slice(2, 14) + "Z";
  return der(0x17, new TextEncoder().encode(text));
}

/** An extension: OID, critical flag when set, the value's DER in an OCTET STRING. */
function extension(id: string, value: Bytes, critical = false): Bytes {
  return sequence(oid(id), ...(critical ? [der(0x01, new Uint8Array([0xff]))] : []), octets(value));
}

/** subjectAltName: dNSName [2] for names, iPAddress [7] for addresses. */
function altNames(names: readonly string[]): Bytes {
  return sequence(
    ...names.map((name) =>
      ipaddr.isValid(name)
        ? der(0x87, new Uint8Array(ipaddr.parse(name).toByteArray()))
        : der(0x82, new TextEncoder().encode(name))
    ),
  );
}

/** ECDSA's IEEE P1363 signature (r || s) as the DER Ecdsa-Sig-Value X.509 wants. */
function ecdsaSignature(raw: Bytes): Bytes {
  const half = raw.length / 2;
  return sequence(integer(raw.subarray(0, half)), integer(raw.subarray(half)));
}

function pem(label: string, bytes: Bytes | ArrayBuffer): string {
  const b64 = btoa(String.fromCharCode(...new Uint8Array(bytes)));
  return `-----BEGIN ${label}-----\n${b64.match(/.{1,64}/g)!.join("\n")}\n-----END ${label}-----\n`;
}

const ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2";

/**
 * A self-signed server certificate for `names` (DNS names and IP addresses; the first is the
 * common name), valid from a minute ago for `days` days, with a fresh key.
 */
export async function selfSignedPem(names: readonly string[], days: number): Promise<PemPair> {
  const keys = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ]);
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
  const serial = crypto.getRandomValues(new Uint8Array(16));
  serial[0] = (serial[0]! & 0x7f) | 0x01; // positive and never zero
  const name = sequence(set(sequence(oid("2.5.4.3"), utf8(names[0] ?? "localhost"))));
  const now = Date.now();
  const algorithm = sequence(oid(ECDSA_WITH_SHA256));
  const tbs = sequence(
    explicit(0, integer(new Uint8Array([2]))), // v3
    integer(serial),
    algorithm,
    name,
    sequence(utcTime(new Date(now - 60_000)), utcTime(new Date(now + days * 86_400_000))),
    name,
    spki,
    explicit(
      3,
      sequence(
        extension("2.5.29.19", sequence(), true), // basicConstraints: not a CA
        extension("2.5.29.15", bits(new Uint8Array([0x80]), 7), true), // keyUsage: digitalSignature
        extension("2.5.29.37", sequence(oid("1.3.6.1.5.5.7.3.1"))), // extKeyUsage: serverAuth
        extension("2.5.29.17", altNames(names)),
      ),
    ),
  );
  const signature = new Uint8Array(
    await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, keys.privateKey, tbs),
  );
  const certificate = sequence(tbs, algorithm, bits(ecdsaSignature(signature)));
  return {
    cert: pem("CERTIFICATE", certificate),
    key: pem("PRIVATE KEY", await crypto.subtle.exportKey("pkcs8", keys.privateKey)),
  };
}
