/**
 * A memory cgroup with a limit, to run a process the way a Pod's memory limit runs it (root;
 * cgroup v2, or v1's memory controller). `privateRuntime()` gives the process its own copy of
 * the deno binary with nothing cached, so the cgroup pays for the runtime's pages as a freshly
 * started container does, instead of sharing the pages the test's own deno already holds.
 */
import { existsSync as exists } from "node:fs";
import { dirname, join } from "node:path";

const V2_ROOT = "/sys/fs/cgroup";
const V1_ROOT = "/sys/fs/cgroup/memory";

/** What the cgroup's counters say. */
export interface MemoryCgroupStats {
  /** Highest memory charged (anonymous + page cache), in bytes. */
  peakBytes: number;
  /** Anonymous memory charged now, in bytes. */
  anonBytes: number;
  /** Page cache charged now, in bytes. */
  fileBytes: number;
  /** Processes the OOM killer killed in the cgroup. */
  oomKills: number;
}

function readNumber(path: string): number {
  return Number(Deno.readTextFileSync(path).trim());
}

function readKeyed(path: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of Deno.readTextFileSync(path).split("\n")) {
    const [key, value] = line.split(" ");
    if (key && value !== undefined) out.set(key, Number(value));
  }
  return out;
}

/** A memory cgroup created for a test; removed on dispose (its processes must have exited). */
export class MemoryCgroup implements Disposable {
  readonly path: string;
  readonly version: 1 | 2;

  private constructor(path: string, version: 1 | 2) {
    this.path = path;
    this.version = version;
  }

  /** Creates cgroup `name` limited to `limitBytes` of memory, swap included. */
  static create(name: string, limitBytes: number): MemoryCgroup {
    let cgroup: MemoryCgroup;
    const v2 = exists(join(V2_ROOT, "cgroup.controllers")) &&
      Deno.readTextFileSync(join(V2_ROOT, "cgroup.subtree_control")).includes("memory");
    if (v2) {
      cgroup = new MemoryCgroup(join(V2_ROOT, name), 2);
    } else if (exists(join(V1_ROOT, "memory.limit_in_bytes"))) {
      cgroup = new MemoryCgroup(join(V1_ROOT, name), 1);
    } else {
      throw new Error(
        `No memory cgroup controller: neither cgroup v2 with "memory" in ` +
          `${V2_ROOT}/cgroup.subtree_control nor cgroup v1 at ${V1_ROOT}`,
      );
    }
    Deno.mkdirSync(cgroup.path);
    try {
      if (cgroup.version === 2) {
        Deno.writeTextFileSync(join(cgroup.path, "memory.max"), String(limitBytes));
        if (exists(join(cgroup.path, "memory.swap.max"))) {
          Deno.writeTextFileSync(join(cgroup.path, "memory.swap.max"), "0");
        }
      } else {
        Deno.writeTextFileSync(join(cgroup.path, "memory.limit_in_bytes"), String(limitBytes));
        const memsw = join(cgroup.path, "memory.memsw.limit_in_bytes");
        if (exists(memsw)) Deno.writeTextFileSync(memsw, String(limitBytes));
      }
    } catch (error: unknown) {
      Deno.removeSync(cgroup.path);
      throw error;
    }
    return cgroup;
  }

  /**
   * A command prefix that moves the shell into the cgroup before exec'ing the rest of the
   * command line, so the process and its children start inside it.
   */
  wrapper(): string[] {
    return ["sh", "-c", `echo $$ > ${join(this.path, "cgroup.procs")} && exec "$@"`, "sh"];
  }

  /** The cgroup's counters now. */
  stats(): MemoryCgroupStats {
    const file = (name: string) => join(this.path, name);
    if (this.version === 2) {
      const stat = readKeyed(file("memory.stat"));
      const events = readKeyed(file("memory.events"));
      return {
        peakBytes: exists(file("memory.peak"))
          ? readNumber(file("memory.peak"))
          : readNumber(file("memory.current")),
        anonBytes: stat.get("anon") ?? 0,
        fileBytes: stat.get("file") ?? 0,
        oomKills: events.get("oom_kill") ?? 0,
      };
    }
    const stat = readKeyed(file("memory.stat"));
    const oom = readKeyed(file("memory.oom_control"));
    return {
      peakBytes: readNumber(file("memory.max_usage_in_bytes")),
      anonBytes: stat.get("rss") ?? 0,
      fileBytes: stat.get("cache") ?? 0,
      oomKills: oom.get("oom_kill") ?? 0,
    };
  }

  [Symbol.dispose](): void {
    try {
      Deno.removeSync(this.path);
    } catch {
      // Still populated (a process did not exit) or already gone: nothing more to do here.
    }
  }
}

/**
 * A private copy of the deno binary, its pages dropped from the page cache (GNU dd's nocache
 * flag), removed on dispose.
 */
export async function privateRuntime(): Promise<{ path: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "iprule-runtime-" });
  const path = join(dir, "deno");
  await Deno.copyFile(Deno.execPath(), path);
  await Deno.chmod(path, 0o755);
  {
    // Written pages are dirty until synced, and only clean pages can be dropped.
    using file = await Deno.open(path, { read: true });
    await file.sync();
  }
  const dd = await new Deno.Command("dd", {
    args: [`if=${path}`, "iflag=nocache", "count=0", "status=none"],
    stderr: "piped",
  }).output();
  if (!dd.success) {
    await Deno.remove(dirname(path), { recursive: true });
    throw new Error(
      `dd could not drop the runtime copy's cache: ${new TextDecoder().decode(dd.stderr)}`,
    );
  }
  return {
    path,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}
