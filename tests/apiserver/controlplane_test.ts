/** The control-plane test helper itself: identities, RBAC, dual-stack Services, teardown. */

import assert from "node:assert/strict";
import {
  ADMIN_USER,
  AGENT_USER,
  CONTROLLER_USER,
  type Identity,
  isRunning,
  SERVICE_ACCOUNT_GROUPS,
  startControlPlane,
} from "../support/controlplane.ts";

Deno.test("startControlPlane() serves the three identities and tears down", async (t) => {
  const cp = await startControlPlane();
  const pids = new Set<number>();
  try {
    await t.step("kubectl reports our own pinned version", async () => {
      const { stdout } = await cp.kubectl(["version", "-o", "json"]);
      const version = JSON.parse(stdout) as {
        clientVersion: { gitVersion: string };
        serverVersion: { gitVersion: string };
      };
      assert.match(version.clientVersion.gitVersion, /^v1\.\d+\.\d+$/);
      assert.equal(version.serverVersion.gitVersion, version.clientVersion.gitVersion);
    });

    type UserInfo = { user: string; groups: readonly string[] };
    const expected: Record<Identity, UserInfo> = {
      admin: { user: ADMIN_USER, groups: ["system:masters"] },
      controller: { user: CONTROLLER_USER, groups: SERVICE_ACCOUNT_GROUPS },
      agent: { user: AGENT_USER, groups: SERVICE_ACCOUNT_GROUPS },
    };
    for (const [identity, want] of Object.entries(expected) as [Identity, UserInfo][]) {
      await t.step(`authenticates the ${identity} as "${want.user}"`, async () => {
        const { stdout } = await cp.kubectl(["auth", "whoami", "-o", "json"], { identity });
        const info =
          (JSON.parse(stdout) as { status: { userInfo: { username: string; groups: string[] } } })
            .status.userInfo;
        assert.equal(info.username, want.user);
        for (const group of want.groups) {
          assert.ok(info.groups.includes(group), `Missing "${group}"`);
        }
      });
    }

    await t.step("authorizes with RBAC: service accounts get nothing unbound", async () => {
      const args = ["auth", "can-i", "list", "iprules.api.operator.brtrm.dev"];
      assert.equal((await cp.kubectl(args)).stdout.trim(), "yes");
      for (const identity of ["controller", "agent"] as const) {
        const result = await cp.kubectl(args, { identity, check: false });
        assert.equal(result.stdout.trim(), "no");
        const list = await cp.kubectl(["get", "iprules"], { identity, check: false });
        assert.match(list.stderr, /forbidden/);
      }
    });

    await t.step("allocates both ClusterIPs of a dual-stack Service", async () => {
      await cp.kubectl(["create", "-f", "-"], {
        stdin: JSON.stringify({
          apiVersion: "v1",
          kind: "Service",
          metadata: { name: "dual", namespace: "default" },
          spec: {
            type: "LoadBalancer",
            ipFamilyPolicy: "RequireDualStack",
            ipFamilies: ["IPv4", "IPv6"],
            ports: [{ port: 80 }],
          },
        }),
      });
      const { stdout } = await cp.kubectl(["get", "service", "dual", "-o", "json"]);
      const clusterIPs = (JSON.parse(stdout) as { spec: { clusterIPs: string[] } }).spec.clusterIPs;
      assert.equal(clusterIPs.length, 2);
      assert.match(clusterIPs[0] ?? "", /^10\.96\./);
      assert.match(clusterIPs[1] ?? "", /^fd00:96::/);
    });

    for (const entry of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      const cmdline = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).replaceAll("\0", " ");
      if (cmdline.includes(cp.dir)) pids.add(Number(entry.name));
    }
    assert.equal(pids.size, 2, "Expected etcd and kube-apiserver to run");
  } finally {
    await cp.stop();
  }

  await t.step("stop() kills both processes and removes the temp dir", async () => {
    for (const pid of pids) assert.ok(!isRunning(pid), `Process ${pid} still runs`);
    await assert.rejects(Deno.stat(cp.dir), Deno.errors.NotFound);
    await cp.stop();
  });
});
