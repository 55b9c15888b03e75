import assert from "node:assert/strict";
import { Logger } from "./log.ts";

Deno.test("Logger writes JSON lines with msg, level and inherited fields", () => {
  const lines: string[] = [];
  const log = new Logger({ sink: (l) => lines.push(l) }).with({ node: "n1" });
  log.info("Rule added", { rule: "from 10.0.0.1 lookup 100", err: new Error("boom") });
  log.debug("Not written");
  assert.equal(lines.length, 1);
  const entry = JSON.parse(lines[0]!);
  assert.equal(entry.msg, "Rule added");
  assert.equal(entry.level, "info");
  assert.equal(entry.node, "n1");
  assert.equal(entry.err, "boom");
  assert.ok(Date.parse(entry.ts) > 0);
});

Deno.test("Logger writes text lines for a terminal", () => {
  const lines: string[] = [];
  new Logger({ format: "text", level: "debug", sink: (l) => lines.push(l) })
    .debug("Synced", { kind: "IPRule", count: 3, note: "two words" });
  assert.match(lines[0]!, /DEBUG Synced kind=IPRule count=3 note="two words"$/);
});
