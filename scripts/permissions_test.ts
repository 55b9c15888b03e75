import assert from "node:assert/strict";
import { AGENT_READ_PATHS, EXECUTABLES, kubeconfigFiles, runFlags } from "./permissions.ts";
import { HOST_CHECK_PATHS } from "../src/agent/host_checks.ts";

Deno.test("the agent may read its service account and the host checks' paths, on a node and below /host", () => {
  const read = EXECUTABLES.agent.flags.filter((f) => f.startsWith("--allow-read"));
  assert.deepEqual(read, [`--allow-read=${AGENT_READ_PATHS.join(",")}`]);
  assert.ok(AGENT_READ_PATHS.includes("/var/run/secrets/kubernetes.io/serviceaccount"));
  for (const path of HOST_CHECK_PATHS) {
    assert.ok(AGENT_READ_PATHS.includes(path), path);
    assert.ok(AGENT_READ_PATHS.includes(`/host${path}`), `/host${path}`);
  }
  assert.ok(!AGENT_READ_PATHS.some((p) => ["/", "/etc", "/run", "/host"].includes(p)));
});

Deno.test("kubeconfigFiles() takes --kubeconfig, else $KUBECONFIG, else ~/.kube/config", () => {
  assert.deepEqual(kubeconfigFiles(["--kubeconfig=/a"], { KUBECONFIG: "/b" }), ["/a"]);
  assert.deepEqual(kubeconfigFiles(["--kubeconfig", "/a"], {}), ["/a"]);
  // Given twice (a test's default and its own): the agent takes the last; both are readable.
  assert.deepEqual(kubeconfigFiles(["--kubeconfig=/a", "--kubeconfig=/b"], {}), ["/a", "/b"]);
  assert.deepEqual(kubeconfigFiles([], { KUBECONFIG: "/b::/c", HOME: "/h" }), ["/b", "/c"]);
  assert.deepEqual(kubeconfigFiles([], { HOME: "/h" }), ["/h/.kube/config"]);
  assert.deepEqual(kubeconfigFiles([], {}), []);
});

Deno.test("runFlags() lets only the agent's deno run read the kubeconfig besides its compiled flags", () => {
  assert.deepEqual(runFlags("agent", ["--kubeconfig=/k"], {}), [
    ...EXECUTABLES.agent.flags,
    "--allow-read=/k",
  ]);
  assert.deepEqual(runFlags("controller", ["--kubeconfig=/k"], {}), EXECUTABLES.controller.flags);
});
