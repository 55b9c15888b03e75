import assert from "node:assert/strict";
import { DEFAULT_LIBMNL_PATH, LIBMNL_PATH_ENV, resolveLibmnlPath } from "./library.ts";

function withEnv(value: string | undefined, fn: () => void): void {
  const saved = Deno.env.get(LIBMNL_PATH_ENV);
  if (value === undefined) Deno.env.delete(LIBMNL_PATH_ENV);
  else Deno.env.set(LIBMNL_PATH_ENV, value);
  try {
    fn();
  } finally {
    if (saved === undefined) Deno.env.delete(LIBMNL_PATH_ENV);
    else Deno.env.set(LIBMNL_PATH_ENV, saved);
  }
}

Deno.test("resolveLibmnlPath() defaults to the Debian multiarch location", () => {
  withEnv(undefined, () => assert.equal(resolveLibmnlPath(), DEFAULT_LIBMNL_PATH));
  assert.match(DEFAULT_LIBMNL_PATH, /^\/usr\/lib\/[a-z0-9_]+-linux-gnu\/libmnl\.so\.0$/);
});

Deno.test("resolveLibmnlPath() prefers the option, then IPRULE_LIBMNL_PATH", () => {
  withEnv("/opt/env/libmnl.so.0", () => {
    assert.equal(resolveLibmnlPath(), "/opt/env/libmnl.so.0");
    assert.equal(resolveLibmnlPath("/opt/option/libmnl.so.0"), "/opt/option/libmnl.so.0");
  });
  withEnv("", () => assert.equal(resolveLibmnlPath(), DEFAULT_LIBMNL_PATH));
});
