import assert from "node:assert/strict";
import { nameList } from "./conditions.ts";

Deno.test("nameList() names five and counts the rest, whatever the cluster size", () => {
  assert.equal(nameList([]), "");
  assert.equal(nameList(["a", "b"]), "a, b");
  const names = Array.from(
    { length: 800 },
    (_, i) => `ip-10-0-${i >> 8}-${i & 255}.eu-west-1.compute.internal`,
  );
  const text = nameList(names);
  assert.match(text, /^ip-10-0-0-0\.eu-west-1\.compute\.internal, .* and 795 more$/);
  assert.ok(text.length < 300, `${text.length} characters`);
});
