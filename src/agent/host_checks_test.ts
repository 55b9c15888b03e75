import assert from "node:assert/strict";
import {
  type HostFiles,
  hostWarnings,
  lastNetworkdAssignment,
  networkdSetting,
} from "./host_checks.ts";

/** Host files from a path → text map; directories are implied by their files. */
function host(files: Record<string, string>, dirs: string[] = []): HostFiles {
  return {
    exists: (path) =>
      path in files || dirs.includes(path) ||
      Object.keys(files).some((f) => f.startsWith(`${path}/`)),
    read: (path) => files[path],
    list: (dir) =>
      Object.keys(files).filter((f) => f.startsWith(`${dir}/`)).map((f) => f.slice(dir.length + 1)),
    entries: (dir) => [
      ...new Set(
        [...Object.keys(files), ...dirs].filter((f) => f.startsWith(`${dir}/`)).map((f) =>
          f.slice(dir.length + 1).split("/")[0]!
        ),
      ),
    ],
  };
}

/** What a host where networkd runs has: its state file (the directory exists on any systemd host). */
const NETWORKD_RUNS = ["/run/systemd/netif/state"];

Deno.test("lastNetworkdAssignment() reads the setting of the [Network] section only", () => {
  const text = [
    "# ManageForeignRoutingPolicyRules=no",
    "[Network]",
    "ManageForeignRoutingPolicyRules=yes",
    "ManageForeignRoutingPolicyRules = no ",
    "[DHCPv4]",
    "ManageForeignRoutingPolicyRules=yes",
  ].join("\n");
  assert.equal(lastNetworkdAssignment(text), "no");
  assert.equal(lastNetworkdAssignment("[Network]\nManageForeignRoutes=no\n"), undefined);
});

Deno.test("networkdSetting() defaults to managing foreign rules", () => {
  assert.deepEqual(networkdSetting(host({})), { manages: true, file: undefined, value: undefined });
  const commented = host({
    "/etc/systemd/networkd.conf": "[Network]\n#ManageForeignRoutingPolicyRules=no\n",
  });
  assert.equal(networkdSetting(commented).manages, true);
});

Deno.test("networkdSetting() lets drop-ins override networkd.conf, in file-name order", () => {
  const files = host({
    "/etc/systemd/networkd.conf": "[Network]\nManageForeignRoutingPolicyRules=no\n",
    "/etc/systemd/networkd.conf.d/20-on.conf": "[Network]\nManageForeignRoutingPolicyRules=yes\n",
    "/usr/lib/systemd/networkd.conf.d/10-off.conf":
      "[Network]\nManageForeignRoutingPolicyRules=off\n",
  });
  assert.deepEqual(networkdSetting(files), {
    manages: true,
    file: "/etc/systemd/networkd.conf.d/20-on.conf",
    value: "yes",
  });
  const off = host({
    "/etc/systemd/networkd.conf.d/90-iprule.conf":
      "[Network]\nManageForeignRoutingPolicyRules=no\n",
  });
  assert.equal(networkdSetting(off).manages, false);
});

Deno.test("networkdSetting() lets a drop-in in /etc hide the same name in /usr/lib", () => {
  const files = host({
    "/etc/systemd/networkd.conf.d/50-x.conf": "[Network]\nManageForeignRoutingPolicyRules=false\n",
    "/usr/lib/systemd/networkd.conf.d/50-x.conf":
      "[Network]\nManageForeignRoutingPolicyRules=yes\n",
  });
  assert.equal(networkdSetting(files).manages, false);
});

Deno.test("hostWarnings() names the networkd setting when networkd runs with the default", () => {
  const [warning, ...rest] = hostWarnings(host({}, NETWORKD_RUNS));
  assert.deepEqual(rest, []);
  assert.match(warning!, /ManageForeignRoutingPolicyRules is not set, and its default is yes/);
  assert.match(warning!, /ManageForeignRoutingPolicyRules=no/);
});

Deno.test("hostWarnings() is quiet when networkd is told to keep foreign rules", () => {
  const files = host({
    "/etc/systemd/networkd.conf": "[Network]\nManageForeignRoutingPolicyRules=no\n",
  }, NETWORKD_RUNS);
  assert.deepEqual(hostWarnings(files), []);
});

Deno.test("hostWarnings() ignores networkd settings when networkd does not run", () => {
  assert.deepEqual(hostWarnings(host({})), []);
  // systemd's tmpfiles create /run/systemd/netif and its subdirectories on every systemd host.
  const tmpfilesOnly = [
    "/run/systemd/netif",
    "/run/systemd/netif/links",
    "/run/systemd/netif/leases",
  ];
  assert.deepEqual(hostWarnings(host({}, tmpfilesOnly)), []);
});

Deno.test("networkdSetting() ignores a value that is no boolean, as networkd does", () => {
  for (const bad of ["", "nope", "maybe"]) {
    const files = host({
      "/etc/systemd/networkd.conf": "[Network]\nManageForeignRoutingPolicyRules=no\n",
      "/etc/systemd/networkd.conf.d/50-x.conf":
        `[Network]\nManageForeignRoutingPolicyRules=${bad}\n`,
    });
    assert.deepEqual(networkdSetting(files), {
      manages: false,
      file: "/etc/systemd/networkd.conf",
      value: "no",
    }, bad);
  }
  for (const word of ["TRUE", "On", "1", "y", "t"]) {
    const files = host({
      "/etc/systemd/networkd.conf": `[Network]\nManageForeignRoutingPolicyRules=${word}\n`,
    });
    assert.equal(networkdSetting(files).manages, true, word);
  }
});

Deno.test("hostWarnings() warns about NetworkManager naming its routing-rules settings", () => {
  const warnings = hostWarnings(host({}, ["/run/NetworkManager/devices"]));
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /NetworkManager runs/);
  assert.match(warnings[0]!, /ipv4\.routing-rules/);
});

Deno.test("hostWarnings() takes an empty NetworkManager run directory for no NetworkManager", () => {
  // What the DaemonSet's DirectoryOrCreate mount leaves on a node without NetworkManager.
  assert.deepEqual(hostWarnings(host({}, ["/run/NetworkManager"])), []);
  assert.equal(hostWarnings(host({ "/run/NetworkManager/resolv.conf": "" })).length, 1);
});
