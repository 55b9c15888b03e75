import assert from "node:assert/strict";
import { eventName } from "./events.ts";

Deno.test("eventName() is the object's name and a suffix, cut to a valid 253-character name", () => {
  assert.equal(eventName("web", "18c0ffee1234"), "web.18c0ffee1234");
  const long = `${"a".repeat(200)}.${"b".repeat(52)}`; // a 253-character IPRule name
  const name = eventName(long, "18c0ffee1234");
  assert.equal(name.length, 253);
  assert.match(name, /^a{200}\.b{39}\.18c0ffee1234$/);
  // A cut must not leave a dot or dash before the suffix's dot.
  assert.equal(
    eventName(`${"a".repeat(239)}.-x`, "18c0ffee1234"),
    `${"a".repeat(239)}.18c0ffee1234`,
  );
  assert.ok(eventName("x".repeat(300)).length <= 253);
});
