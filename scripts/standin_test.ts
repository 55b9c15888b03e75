import assert from "node:assert/strict";
import { EXECUTABLES } from "./permissions.ts";
import { STANDIN_APP, STANDIN_DENO, standinArgv, standinHeader } from "./standin.ts";

Deno.test("standinArgv() runs each entry point with exactly the flags of scripts/permissions.ts", () => {
  for (const name of ["controller", "agent"] as const) {
    const argv = standinArgv(name);
    assert.equal(argv[0], STANDIN_DENO);
    assert.equal(argv.at(-1), `${STANDIN_APP}/${EXECUTABLES[name].entry}`);
    const flags = argv.filter((a) => a.startsWith("--allow") || a.startsWith("--v8-flags"));
    assert.deepEqual(flags, EXECUTABLES[name].flags);
    // Nothing that would fetch, prompt or rewrite the lock file at run time.
    for (const flag of ["--cached-only", "--frozen", "--no-prompt"]) assert.ok(argv.includes(flag));
  }
});

Deno.test("standinHeader() writes the argv as C string literals, one per line", () => {
  const header = standinHeader("agent");
  for (const arg of standinArgv("agent")) assert.ok(header.includes(`  ${JSON.stringify(arg)},\n`));
  assert.match(header, /^static const char \*const STANDIN_ARGV\[\] = \{$/m);
});
