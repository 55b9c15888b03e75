/**
 * Start-up checks of the host: network managers that delete routing-policy rules they did not
 * configure (systemd-networkd with `ManageForeignRoutingPolicyRules`, whose default is yes;
 * NetworkManager). Parsing is pure; `readHost` reads the files through Deno.
 */

/** The files the checks read, by absolute path (relative to the host root). */
export interface HostFiles {
  /** Whether a path exists. */
  exists(path: string): boolean;
  /** A file's text, or undefined when it cannot be read. */
  read(path: string): string | undefined;
  /** Names of the files (not directories) of a directory, [] when it cannot be read. */
  list(dir: string): string[];
  /** Names of every entry of a directory, [] when it cannot be read. */
  entries(dir: string): string[];
}

/** Where systemd-networkd looks for networkd.conf, first found wins. */
const NETWORKD_CONF = [
  "/etc/systemd/networkd.conf",
  "/run/systemd/networkd.conf",
  "/usr/local/lib/systemd/networkd.conf",
  "/usr/lib/systemd/networkd.conf",
];
/** Drop-in directories, highest precedence first (a name in /etc hides the same name below). */
const NETWORKD_DROPINS = [
  "/etc/systemd/networkd.conf.d",
  "/run/systemd/networkd.conf.d",
  "/usr/local/lib/systemd/networkd.conf.d",
  "/usr/lib/systemd/networkd.conf.d",
];
/**
 * Written by systemd-networkd once it runs. Not /run/systemd/netif itself: systemd's tmpfiles
 * create that directory at boot on every systemd host, networkd or not.
 */
const NETWORKD_RUNTIME = "/run/systemd/netif/state";
/**
 * NetworkManager's run directory, where it keeps device state and resolv.conf while it runs. An
 * empty one means nothing: the agent's DaemonSet mounts it with DirectoryOrCreate, so on a node
 * without NetworkManager the kubelet made it.
 */
const NETWORKMANAGER_RUNTIME = "/run/NetworkManager";
/** Every path the checks read (files, and directories they list), relative to the host root. */
export const HOST_CHECK_PATHS: readonly string[] = [
  ...NETWORKD_CONF,
  ...NETWORKD_DROPINS,
  NETWORKD_RUNTIME,
  NETWORKMANAGER_RUNTIME,
];
/** The networkd setting. */
export const NETWORKD_SETTING = "ManageForeignRoutingPolicyRules";

/** One `ManageForeignRoutingPolicyRules=` assignment and where it was made. */
export interface NetworkdSetting {
  /** The effective value: true unless set to a false boolean. */
  manages: boolean;
  /** The file of the last assignment, or undefined when the default (yes) applies. */
  file: string | undefined;
  /** The assigned text, or undefined for the default. */
  value: string | undefined;
}

/** systemd's parse_boolean words; any other value is ignored with a warning by networkd. */
const TRUE_WORDS = new Set(["1", "yes", "y", "true", "t", "on"]);
const FALSE_WORDS = new Set(["0", "no", "n", "false", "f", "off"]);

/** The last `ManageForeignRoutingPolicyRules=` of the `[Network]` section of one file's text. */
export function lastNetworkdAssignment(text: string): string | undefined {
  let section = "";
  let value: string | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = header[1]!.trim();
      continue;
    }
    const eq = line.indexOf("=");
    if (section !== "Network" || eq < 0) continue;
    if (line.slice(0, eq).trim() === NETWORKD_SETTING) value = line.slice(eq + 1).trim();
  }
  return value;
}

/**
 * The effective `ManageForeignRoutingPolicyRules` of systemd-networkd: networkd.conf (first
 * found), then drop-ins sorted by file name, the last assignment winning; default yes.
 */
export function networkdSetting(files: HostFiles): NetworkdSetting {
  const sources: string[] = [];
  const main = NETWORKD_CONF.find((path) => files.exists(path));
  if (main !== undefined) sources.push(main);
  const dropins = new Map<string, string>();
  for (const dir of NETWORKD_DROPINS) {
    for (const name of files.list(dir)) {
      if (name.endsWith(".conf") && !dropins.has(name)) dropins.set(name, `${dir}/${name}`);
    }
  }
  for (const name of [...dropins.keys()].sort()) sources.push(dropins.get(name)!);
  let result: NetworkdSetting = { manages: true, file: undefined, value: undefined };
  for (const file of sources) {
    const value = lastNetworkdAssignment(files.read(file) ?? "");
    if (value === undefined) continue;
    const word = value.toLowerCase();
    // Like networkd: a value that is no boolean (an empty one included) is ignored.
    if (!TRUE_WORDS.has(word) && !FALSE_WORDS.has(word)) continue;
    result = { manages: TRUE_WORDS.has(word), file, value };
  }
  return result;
}

/** Warnings about the host, each naming the setting to change; [] when nothing was found. */
export function hostWarnings(files: HostFiles): string[] {
  const warnings: string[] = [];
  if (files.exists(NETWORKD_RUNTIME)) {
    const setting = networkdSetting(files);
    if (setting.manages) {
      const where = setting.file === undefined
        ? "not set, and its default is yes"
        : `set to "${setting.value}" in "${setting.file}"`;
      warnings.push(
        `systemd-networkd runs and ${NETWORKD_SETTING} is ${where}: networkd deletes routing-policy ` +
          `rules it did not configure, this agent's included, when it reconfigures a link; set ` +
          `${NETWORKD_SETTING}=no in the [Network] section of "/etc/systemd/networkd.conf" or ` +
          `of a drop-in in "/etc/systemd/networkd.conf.d/" (the agent re-adds deleted rules meanwhile)`,
      );
    }
  }
  if (files.entries(NETWORKMANAGER_RUNTIME).length > 0) {
    warnings.push(
      `NetworkManager runs: a connection with "ipv4.routing-rules" or "ipv6.routing-rules" set ` +
        `makes it manage that family's routing-policy rules, and it may delete rules it did not ` +
        `configure, this agent's included; leave both settings empty on this node's connections ` +
        `(the agent re-adds deleted rules meanwhile)`,
    );
  }
  return warnings;
}

/** The host's files through Deno, below `root` (default "/", e.g. "/host" in a container). */
export function readHost(root = "/"): HostFiles {
  const base = root.replace(/\/+$/, "");
  return {
    exists(path) {
      try {
        Deno.statSync(`${base}${path}`);
        return true;
      } catch {
        return false;
      }
    },
    read(path) {
      try {
        return Deno.readTextFileSync(`${base}${path}`);
      } catch {
        return undefined;
      }
    },
    list(dir) {
      try {
        return [...Deno.readDirSync(`${base}${dir}`)].filter((e) => !e.isDirectory).map((e) =>
          e.name
        );
      } catch {
        return [];
      }
    },
    entries(dir) {
      try {
        return [...Deno.readDirSync(`${base}${dir}`)].map((e) => e.name);
      } catch {
        return [];
      }
    },
  };
}
