/**
 * Runs our executables as child processes for tests, with exactly the permission flags their
 * compiled form gets (scripts/permissions.ts; for the agent, read access to the kubeconfig it is
 * given besides), logs captured to a file, always killed on stop.
 */
import { type Executable, EXECUTABLES, runFlags } from "../../scripts/permissions.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

/** A running controller or agent. */
export class ExecutableProcess {
  readonly name: string;
  readonly logFile: string;
  readonly #child: Deno.ChildProcess;
  readonly #log: Deno.FsFile;
  #status: Promise<Deno.CommandStatus>;
  #stopped = false;

  private constructor(name: string, child: Deno.ChildProcess, log: Deno.FsFile, logFile: string) {
    this.name = name;
    this.#child = child;
    this.#log = log;
    this.logFile = logFile;
    this.#status = child.status;
  }

  /**
   * Starts `deno run <flags> <entry> <args>`; `prefix` runs it under another command
   * (e.g. `ip netns exec <ns>`).
   */
  static async start(
    executable: Executable,
    args: readonly string[],
    options: {
      logFile: string;
      prefix?: readonly string[];
      env?: Record<string, string>;
      /** The deno binary; default this process's. */
      runtime?: string;
      /**
       * The checkout whose entry point runs (benchmarks compare another one: "before"); default
       * this one. Its permission flags are this checkout's.
       */
      root?: string;
    },
  ): Promise<ExecutableProcess> {
    const { entry } = EXECUTABLES[executable];
    const flags = runFlags(executable, args, { ...Deno.env.toObject(), ...options.env });
    const root = options.root === undefined ? ROOT : `${options.root.replace(/\/$/, "")}/`;
    const command = [
      ...(options.prefix ?? []),
      options.runtime ?? Deno.execPath(),
      "run",
      "--quiet",
      ...flags,
      `${root}${entry}`,
      ...args,
    ];
    const log = await Deno.open(options.logFile, { create: true, append: true });
    const child = new Deno.Command(command[0]!, {
      args: command.slice(1),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1", ...options.env },
    }).spawn();
    // Both streams into the log file, without holding the test's event loop on exit.
    const pump = async (stream: ReadableStream<Uint8Array>) => {
      for await (const chunk of stream) await log.write(chunk).catch(() => 0);
    };
    const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
    const proc = new ExecutableProcess(executable, child, log, options.logFile);
    proc.#status = child.status.then(async (s) => {
      await pumps;
      return s;
    });
    return proc;
  }

  /** Process id. */
  get pid(): number {
    return this.#child.pid;
  }

  /** Exit status, once it exits. */
  get status(): Promise<Deno.CommandStatus> {
    return this.#status;
  }

  /** The log so far. */
  async log(): Promise<string> {
    return await Deno.readTextFile(this.logFile).catch(() => "");
  }

  /** Sends a signal (default SIGTERM) and waits for the exit. Idempotent. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus> {
    if (!this.#stopped) {
      this.#stopped = true;
      try {
        this.#child.kill(signal);
      } catch {
        // Already exited.
      }
      const timer = setTimeout(() => {
        try {
          this.#child.kill("SIGKILL");
        } catch {
          // Exited meanwhile.
        }
      }, 10_000);
      try {
        await this.#status;
      } finally {
        clearTimeout(timer);
        this.#log.close();
      }
    }
    return await this.#status;
  }

  [Symbol.asyncDispose](): Promise<unknown> {
    return this.stop("SIGKILL");
  }
}

/** Polls `check` until it returns a value other than undefined/false, or fails after `timeoutMs`. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (err: unknown) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(
    `Timed out after ${timeoutMs} ms waiting for ${what}` + (last ? `: ${last}` : ""),
  );
}

/** A free TCP port on loopback. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}
