import assert from "node:assert/strict";
import { parseFlags, UsageError } from "../cli.ts";
import { endpointFlags, endpointOptions } from "./flags.ts";

const DEFAULTS = { metricsPort: 8443, healthPort: 8081 };
const parse = (args: string[]) =>
  endpointOptions(parseFlags(args, endpointFlags(DEFAULTS)), DEFAULTS);

Deno.test("endpointOptions() defaults to protected metrics and a separate plain health port", () => {
  assert.deepEqual(parse([]), {
    metricsAddr: { hostname: "::", port: 8443 },
    healthAddr: { hostname: "::", port: 8081 },
    metricsSecure: true,
  });
});

Deno.test("endpointOptions() reads plain HTTP, a certificate directory and bracketed addresses", () => {
  assert.deepEqual(parse(["--metrics-insecure", "--metrics-addr=127.0.0.1:9000"]), {
    metricsAddr: { hostname: "127.0.0.1", port: 9000 },
    healthAddr: { hostname: "::", port: 8081 },
    metricsSecure: false,
  });
  assert.deepEqual(parse(["--metrics-cert-dir=/tls", "--health-addr=[10.0.0.7]:1"]), {
    metricsAddr: { hostname: "::", port: 8443 },
    healthAddr: { hostname: "10.0.0.7", port: 1 },
    metricsSecure: true,
    metricsCertDir: "/tls",
  });
  assert.throws(
    () => parse(["--metrics-insecure", "--metrics-cert-dir=/tls"]),
    (e: unknown) => e instanceof UsageError && /--metrics-cert-dir: "\/tls"/.test(e.message),
  );
});
