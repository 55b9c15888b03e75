import assert from "node:assert/strict";
import { Netns } from "../support/netns.ts";

Deno.test("addRules() without NET_ADMIN fails with a typed EPERM that names the capability", async () => {
  await using ns = await Netns.create();
  const child = new URL("./children/add_rule.ts", import.meta.url).pathname;
  // setpriv drops NET_ADMIN from the bounding and inheritable sets: root without the capability.
  const out = await ns.run([
    "setpriv",
    "--bounding-set=-net_admin",
    "--inh-caps=-net_admin",
    Deno.execPath(),
    "run",
    "-A",
    child,
  ]);
  assert.equal(out.code, 0, out.stderr);
  const result = JSON.parse(out.stdout);
  assert.equal(result.isNetlinkError, true);
  assert.equal(result.op, "add");
  assert.equal(result.errno, 1);
  assert.equal(result.code, "EPERM");
  assert.match(result.message, /NET_ADMIN/);
  // Reading rules needs no capability.
  assert.ok(result.dumped >= 3);
  assert.doesNotMatch(await ns.ip(["rule", "show"]), /10\.30\.0\.1/);
});
