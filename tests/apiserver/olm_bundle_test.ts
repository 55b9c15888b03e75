/**
 * The OLM bundle (deploy/olm/) checked by OLM's own rules: the validators of
 * github.com/operator-framework/api (the library behind `operator-sdk bundle validate`), built
 * from its module into bundle-validate (tools/cmd/bundle-validate). The default suite and the
 * OperatorHub suite must report no error; every warning they report must be listed in the
 * README, so that a new one is either fixed or documented.
 */
import assert from "node:assert/strict";
import { ROOT } from "../../scripts/manifests.ts";
import { runTool } from "../support/tools.ts";

interface Finding {
  suite: string;
  level: string;
  name: string;
  type: string;
  field?: string;
  detail: string;
}

async function validate(suite: string): Promise<{ code: number; findings: Finding[] }> {
  const result = await runTool("bundle-validate", ["-suite", suite, `${ROOT}/deploy/olm`]);
  assert.equal(result.stderr.trim(), "", `bundle-validate -suite ${suite}: ${result.stderr}`);
  const findings = result.stdout.trim().split("\n").filter(Boolean).map((l) =>
    JSON.parse(l) as Finding
  );
  return { code: result.code, findings };
}

/** The README's section that lists the validators' warnings. */
async function readmeWarnings(): Promise<string> {
  const readme = await Deno.readTextFile(`${ROOT}/README.md`);
  const start = readme.indexOf("OLM validators' warnings");
  assert.ok(start >= 0, "README.md has no section on the OLM validators' warnings");
  return readme.slice(start).replace(/\s+/g, " ");
}

for (const suite of ["default", "operatorhub"]) {
  Deno.test(`operator-framework/api's ${suite} validators report no error; the README lists every warning`, async () => {
    const { code, findings } = await validate(suite);
    const errors = findings.filter((f) => f.level === "Error");
    assert.deepEqual(errors, [], `bundle-validate -suite ${suite} reported errors`);
    assert.equal(code, 0);
    const listed = await readmeWarnings();
    for (const warning of findings.filter((f) => f.level !== "Error")) {
      assert.ok(
        listed.includes(warning.detail.replace(/\s+/g, " ")),
        `Warning of the ${suite} suite not listed in README.md: ${warning.detail}`,
      );
    }
  });
}

Deno.test("bundle-validate reports a broken bundle as an error (the validators run)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "bundle-" });
  try {
    await Deno.mkdir(`${dir}/manifests`);
    await Deno.mkdir(`${dir}/metadata`);
    for (const sub of ["manifests", "metadata"]) {
      for await (const entry of Deno.readDir(`${ROOT}/deploy/olm/${sub}`)) {
        await Deno.copyFile(
          `${ROOT}/deploy/olm/${sub}/${entry.name}`,
          `${dir}/${sub}/${entry.name}`,
        );
      }
    }
    // A CSV that owns a CRD the bundle does not ship.
    await Deno.remove(`${dir}/manifests/api.operator.brtrm.dev_agents.yaml`);
    const result = await runTool("bundle-validate", ["-suite", "default", dir]);
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.match(result.stdout, /"level":"Error".*owned CRD .*Agent.* not found in bundle/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
