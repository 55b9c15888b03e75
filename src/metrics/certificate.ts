/**
 * The TLS certificate of /metrics: a mounted one (tls.crt and tls.key, the layout of a
 * kubernetes.io/tls Secret), or a self-signed one made at start, as kubebuilder's scaffolding
 * does. Scrapers of a self-signed endpoint skip verification (`insecureSkipVerify`); the
 * token check, not the certificate, is what keeps /metrics private.
 *
 * @module
 */

import { selfSignedPem } from "./x509.ts";

/** A certificate chain and its private key, PEM-encoded. */
export interface TlsPair {
  cert: string;
  key: string;
  /** Where it came from: the directory, or "self-signed". */
  source: string;
}

/** The certificate could not be read or made. */
export class CertificateError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CertificateError";
  }
}

/** Days a self-signed certificate is valid: the process restarts long before. */
const SELF_SIGNED_DAYS = 365;

/** Reads `tls.crt` and `tls.key` from a directory. */
export async function readCertificate(dir: string): Promise<TlsPair> {
  const read = async (name: string) => {
    try {
      return await Deno.readTextFile(`${dir}/${name}`);
    } catch (error: unknown) {
      throw new CertificateError(`Cannot read "${dir}/${name}" (--metrics-cert-dir)`, {
        cause: error,
      });
    }
  };
  const [cert, key] = await Promise.all([read("tls.crt"), read("tls.key")]);
  if (!cert.includes("BEGIN CERTIFICATE")) {
    throw new CertificateError(`No PEM certificate in "${dir}/tls.crt" (--metrics-cert-dir)`);
  }
  if (!/BEGIN [A-Z ]*PRIVATE KEY/.test(key)) {
    throw new CertificateError(`No PEM private key in "${dir}/tls.key" (--metrics-cert-dir)`);
  }
  return { cert, key, source: dir };
}

/** A self-signed ECDSA P-256 certificate for `names` (DNS names and IP addresses). */
export async function selfSignedCertificate(names: readonly string[]): Promise<TlsPair> {
  const unique = [...new Set(names)].filter((n) => n !== "" && n !== "::" && n !== "0.0.0.0");
  const pair = await selfSignedPem(unique, SELF_SIGNED_DAYS);
  return { ...pair, source: "self-signed" };
}

/** The mounted certificate when `dir` is set, else a self-signed one for `names`. */
export function metricsCertificate(
  dir: string | undefined,
  names: readonly string[],
): Promise<TlsPair> {
  return dir === undefined ? selfSignedCertificate(names) : readCertificate(dir);
}
