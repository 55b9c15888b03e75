import assert from "node:assert/strict";
import { KubeconfigError, loadKubeAccess } from "./kubeconfig.ts";

const DATA = new URL("./testdata/", import.meta.url).pathname;

async function headersOf(access: { authenticate(h: Headers): Promise<void> }) {
  const headers = new Headers();
  await access.authenticate(headers);
  return Object.fromEntries(headers);
}

Deno.test("loadKubeAccess() reads the server, CA data and token of the current context", async () => {
  const access = await loadKubeAccess({ kubeconfig: `${DATA}kubeconfig-token.yaml` });
  assert.equal(access.server, "https://198.18.0.1:6443");
  assert.equal(access.ca, await Deno.readTextFile(`${DATA}certs/ca.crt`));
  assert.equal(access.cert, undefined);
  assert.deepEqual(await headersOf(access), { authorization: "Bearer secret-token" });
});

Deno.test("loadKubeAccess() reads client certificates relative to the kubeconfig", async () => {
  const access = await loadKubeAccess({ kubeconfig: `${DATA}kubeconfig-certs.yaml` });
  assert.equal(access.server, "https://[fd00::1]:6443");
  assert.equal(access.ca, await Deno.readTextFile(`${DATA}certs/ca.crt`));
  assert.equal(access.cert, await Deno.readTextFile(`${DATA}certs/client.crt`));
  assert.equal(access.key, await Deno.readTextFile(`${DATA}certs/client.key`));
  assert.deepEqual(await headersOf(access), { "impersonate-user": "someone" });
});

Deno.test("loadKubeAccess() sends basic credentials of a username and password", async () => {
  const access = await loadKubeAccess({ kubeconfig: `${DATA}kubeconfig-basic.yaml` });
  assert.deepEqual(await headersOf(access), {
    authorization: `Basic ${btoa("alice:wonderland")}`,
  });
});

Deno.test("loadKubeAccess() merges the files of $KUBECONFIG, the first current context winning", async () => {
  const previous = Deno.env.get("KUBECONFIG");
  try {
    Deno.env.set("KUBECONFIG", `${DATA}kubeconfig-token.yaml:${DATA}kubeconfig-basic.yaml`);
    assert.equal((await loadKubeAccess()).server, "https://198.18.0.1:6443");
    Deno.env.set("KUBECONFIG", `${DATA}kubeconfig-basic.yaml:${DATA}kubeconfig-token.yaml`);
    assert.equal((await loadKubeAccess()).server, "http://127.0.0.1:8080");
  } finally {
    if (previous === undefined) Deno.env.delete("KUBECONFIG");
    else Deno.env.set("KUBECONFIG", previous);
  }
});

Deno.test("loadKubeAccess() fails with a KubeconfigError naming the file or setting at fault", async () => {
  const cases: [string, RegExp][] = [
    [
      "kubeconfig-dangling.yaml",
      /No cluster in the kubeconfig's current context: context "dangling" names cluster "missing", which is not defined/,
    ],
    [
      "kubeconfig-unknown-context.yaml",
      /current-context "typo" is not among the kubeconfig's contexts/,
    ],
    ["kubeconfig-bad-yaml.yaml", /Kubeconfig ".*kubeconfig-bad-yaml.yaml" is not valid YAML: /],
    ["kubeconfig-list.yaml", /Kubeconfig ".*kubeconfig-list.yaml": expected a mapping/],
    [
      "kubeconfig-missing-ca.yaml",
      /certificate-authority of cluster "test" ".*testdata\/certs\/missing-ca.crt" not readable: /,
    ],
    [
      "no-such-kubeconfig.yaml",
      /Kubeconfig ".*no-such-kubeconfig.yaml" not readable: No such file/,
    ],
  ];
  for (const [file, message] of cases) {
    const error = await loadKubeAccess({ kubeconfig: `${DATA}${file}` }).then(
      () => assert.fail(`${file}: loaded`),
      (e: unknown) => e,
    );
    assert.ok(error instanceof KubeconfigError, `${file}: ${error}`);
    assert.match(error.message, message, file);
  }
});
