import assert from "node:assert/strict";
import type { Executable } from "../../scripts/permissions.ts";
import { Netns } from "../support/netns.ts";
import { ExecutableProcess } from "../support/process.ts";

const DATA = new URL("../../src/k8s/testdata/", import.meta.url).pathname;

/** Runs an executable (in `ns`, with its compiled flags) until it exits; its code and log lines. */
async function runToExit(
  ns: Netns,
  executable: Executable,
  args: string[],
): Promise<{ code: number; lines: string[] }> {
  const dir = await Deno.makeTempDir({ prefix: "iprule-startup-" });
  try {
    const process = await ExecutableProcess.start(executable, args, {
      logFile: `${dir}/out.log`,
      prefix: ns.exec([]),
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const status = await Promise.race([
      process.status,
      new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), 20_000))),
    ]);
    clearTimeout(timer);
    await process.stop("SIGKILL");
    assert.ok(status, `${executable} ${args.join(" ")} did not exit within 20 s`);
    const log = await process.log();
    return { code: status.code, lines: log.split("\n").filter((l) => l.trim() !== "") };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("controller and agent exit 1 with one clear log line when the kubeconfig is unusable", async () => {
  await using ns = await Netns.create();
  const cases: [string, RegExp][] = [
    ["/nonexistent/kubeconfig", /Kubeconfig \\"\/nonexistent\/kubeconfig\\" not readable/],
    [`${DATA}kubeconfig-bad-yaml.yaml`, /kubeconfig-bad-yaml.yaml\\" is not valid YAML/],
    [`${DATA}kubeconfig-dangling.yaml`, /context \\"dangling\\" names cluster \\"missing\\"/],
  ];
  for (const executable of ["controller", "agent"] as const) {
    for (const [kubeconfig, message] of cases) {
      const what = `${executable} --kubeconfig=${kubeconfig}`;
      const { code, lines } = await runToExit(ns, executable, [
        `--kubeconfig=${kubeconfig}`,
        "--log-format=json",
        "--metrics-addr=127.0.0.1:0",
        ...(executable === "agent" ? ["--node-name=startup"] : []),
      ]);
      assert.equal(code, 1, `${what}: exit code\n${lines.join("\n")}`);
      const errors = lines.filter((l) =>
        !l.includes('"level":"info"') && !l.includes('"level":"warn"')
      );
      assert.equal(errors.length, 1, `${what}: expected one error line\n${lines.join("\n")}`);
      assert.match(errors[0]!, /"level":"error","msg":"Kubeconfig not loaded"/, what);
      assert.match(errors[0]!, message, what);
    }
  }
});
