// Network namespaces for tests and benchmarks: a uniquely named namespace per test, commands
// run inside it, our own code run inside it (setns on the calling thread, or a subprocess), and
// deletion even when the test fails (`await using ns = await Netns.create()`).

import { type CommandOutput, runCommand } from "./command.ts";

const CLONE_NEWNET = 0x40000000;
const O_RDONLY_CLOEXEC = 0o2000000;

const LIBC_SYMBOLS = {
  // int __open_2(const char *path, int flags);  (glibc's non-variadic open, for flags without O_CREAT)
  __open_2: { parameters: ["buffer", "i32"], result: "i32" },
  // int setns(int fd, int nstype);
  setns: { parameters: ["i32", "i32"], result: "i32" },
  // int close(int fd);
  close: { parameters: ["i32"], result: "i32" },
  // int *__errno_location(void);
  __errno_location: { parameters: [], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

const LIBC_PATH = `/lib/${Deno.build.arch}-linux-gnu/libc.so.6`;

/** Output of a command run by `Netns.run`. */
export type RunOutput = CommandOutput;

/** Throws unless the process runs as root: netns tests fail (never skip) without it. */
export function requireRoot(): void {
  const uid = Deno.uid();
  if (uid !== 0) {
    throw new Error(`Network-namespace tests require root (uid is "${uid}"): run them with sudo`);
  }
}

/** A network namespace named `iprt-<random>`, deleted by `delete()` or `await using`. */
export class Netns implements AsyncDisposable {
  /** The namespace's name, as `ip netns list` shows it. */
  readonly name: string;
  #deleted = false;

  private constructor(name: string) {
    this.name = name;
  }

  /** Creates a fresh namespace (`ip netns add iprt-<random>`); requires root. */
  static async create(): Promise<Netns> {
    requireRoot();
    const name = `iprt-${crypto.randomUUID().slice(0, 8)}`;
    const out = await command("ip", ["netns", "add", name]);
    if (out.code !== 0) {
      throw new Error(`Cannot create network namespace "${name}": ${out.stderr.trim()}`);
    }
    return new Netns(name);
  }

  /** The argv that runs `argv` inside the namespace (`ip netns exec NAME …`). */
  exec(argv: string[]): string[] {
    return ["ip", "netns", "exec", this.name, ...argv];
  }

  /** Runs `argv` inside the namespace and returns its output, whatever its exit code. */
  run(argv: string[], options: { stdin?: string } = {}): Promise<RunOutput> {
    const [cmd, ...args] = this.exec(argv);
    return command(cmd!, args, options.stdin);
  }

  /** Runs `ip -n NAME ARGS…` and returns its standard output; throws on a non-zero exit. */
  async ip(args: string[], options: { stdin?: string } = {}): Promise<string> {
    const out = await command("ip", ["-n", this.name, ...args], options.stdin);
    if (out.code !== 0) {
      throw new Error(
        `Command "ip -n ${this.name} ${
          args.join(" ")
        }" failed with "${out.code}": ${out.stderr.trim()}`,
      );
    }
    return out.stdout;
  }

  /**
   * Runs the synchronous `fn` with the calling thread inside the namespace (setns), then moves
   * the thread back. Sockets opened by `fn` stay in the namespace for their whole life.
   */
  enter<T>(fn: () => T): T {
    const lib = Deno.dlopen(LIBC_PATH, LIBC_SYMBOLS);
    try {
      const errno = () => new Deno.UnsafePointerView(lib.symbols.__errno_location()!).getInt32();
      const open = (path: string) => {
        const fd = lib.symbols.__open_2(new TextEncoder().encode(`${path}\0`), O_RDONLY_CLOEXEC);
        if (fd < 0) throw new Error(`Cannot open "${path}": errno "${errno()}"`);
        return fd;
      };
      const home = open("/proc/thread-self/ns/net");
      let target = -1;
      try {
        target = open(`/run/netns/${this.name}`);
        if (lib.symbols.setns(target, CLONE_NEWNET) !== 0) {
          throw new Error(`Cannot enter network namespace "${this.name}": errno "${errno()}"`);
        }
        try {
          const result = fn();
          if (result instanceof Promise) {
            throw new TypeError("Netns.enter() takes a synchronous function");
          }
          return result;
        } finally {
          if (lib.symbols.setns(home, CLONE_NEWNET) !== 0) {
            // Never go on in the wrong namespace: later code would touch its rules.
            console.error(`Cannot return to the original network namespace: errno "${errno()}"`);
            Deno.exit(70);
          }
        }
      } finally {
        if (target >= 0) lib.symbols.close(target);
        lib.symbols.close(home);
      }
    } finally {
      lib.close();
    }
  }

  /** Deletes the namespace (`ip netns del`); idempotent. */
  async delete(): Promise<void> {
    if (this.#deleted) return;
    this.#deleted = true;
    const out = await command("ip", ["netns", "del", this.name]);
    if (out.code !== 0 && !/No such file/.test(out.stderr)) {
      throw new Error(`Cannot delete network namespace "${this.name}": ${out.stderr.trim()}`);
    }
  }

  /** Same as `delete()`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.delete();
  }
}

/** Runs `ip ARGS…` on the machine and returns its standard output; throws on a non-zero exit. */
export async function ip(args: readonly string[]): Promise<string> {
  const out = await command("ip", [...args]);
  if (out.code !== 0) {
    throw new Error(
      `Command "ip ${args.join(" ")}" failed with "${out.code}": ${out.stderr.trim()}`,
    );
  }
  return out.stdout;
}

/**
 * Creates the bridge `name` with `address` (CIDR notation) and sets it up; a bridge it made
 * but could not set up is deleted again.
 */
export async function createBridge(name: string, address: string): Promise<void> {
  await ip(["link", "add", name, "type", "bridge"]);
  try {
    await ip(["addr", "add", address, "dev", name]);
    await ip(["link", "set", name, "up"]);
  } catch (error: unknown) {
    await ip(["link", "del", name]).catch(() => {});
    throw error;
  }
}

/**
 * Joins the network namespace `ns` to `bridge`: a veth pair whose `eth0` end, inside, gets
 * `address` (CIDR notation); both ends and the namespace's loopback up.
 */
export async function joinBridge(
  ns: string,
  link: { veth: string; bridge: string; address: string },
): Promise<void> {
  await ip(["link", "add", link.veth, "type", "veth", "peer", "name", "eth0", "netns", ns]);
  await ip(["link", "set", link.veth, "master", link.bridge, "up"]);
  await ip(["-n", ns, "addr", "add", link.address, "dev", "eth0"]);
  await ip(["-n", ns, "link", "set", "lo", "up"]);
  await ip(["-n", ns, "link", "set", "eth0", "up"]);
}

function command(cmd: string, args: string[], stdin?: string): Promise<RunOutput> {
  return runCommand(cmd, args, { stdin });
}
