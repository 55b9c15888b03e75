/**
 * The TLS certificate of /metrics: a mounted one (tls.crt and tls.key, the layout of a
 * kubernetes.io/tls Secret), or a self-signed one made at start, as kubebuilder's scaffolding
 * does. Scrapers of a self-signed endpoint skip verification (`insecureSkipVerify`); the
 * token check, not the certificate, is what keeps /metrics private.
 *
 * @module
 */

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

/**
 * A self-signed ECDSA P-256 certificate for `names` (DNS names and IP addresses). The
 * library is loaded only here, so a process with a mounted certificate never loads it.
 */
export async function selfSignedCertificate(names: readonly string[]): Promise<TlsPair> {
  const { generate } = await import("selfsigned");
  const isIp = (n: string) => /^[\d.]+$/.test(n) || n.includes(":");
  const altNames = [...new Set(names)].filter((n) => n !== "" && n !== "::" && n !== "0.0.0.0")
    .map((n) => isIp(n) ? { type: 7 as const, ip: n } : { type: 2 as const, value: n });
  const pems = await generate([{ name: "commonName", value: names[0] ?? "localhost" }], {
    keyType: "ec",
    algorithm: "sha256",
    notAfterDate: new Date(Date.now() + SELF_SIGNED_DAYS * 86_400_000),
    extensions: [
      { name: "basicConstraints", cA: false },
      { name: "keyUsage", digitalSignature: true, critical: true },
      { name: "extKeyUsage", serverAuth: true },
      { name: "subjectAltName", altNames },
    ],
  });
  return { cert: pems.cert, key: pems.private, source: "self-signed" };
}

/** The mounted certificate when `dir` is set, else a self-signed one for `names`. */
export function metricsCertificate(
  dir: string | undefined,
  names: readonly string[],
): Promise<TlsPair> {
  return dir === undefined ? selfSignedCertificate(names) : readCertificate(dir);
}
