/**
 * Runs a command to its end with its output captured: the one way the test helpers (network
 * namespaces, kubectl, the built tools, cluster nodes) run the commands they wait for.
 *
 * @module
 */

/** Outcome of a command run to its end. */
export interface CommandOutput {
  /** Exit code. */
  code: number;
  /** Whether the exit code was 0. */
  success: boolean;
  /** Captured standard output. */
  stdout: string;
  /** Captured standard error. */
  stderr: string;
}

/** Options of {@linkcode runCommand}. */
export interface RunCommandOptions {
  /** Text written to the command's standard input; without it, stdin is closed. */
  stdin?: string | undefined;
  /** Environment variables added to this process's. */
  env?: Record<string, string> | undefined;
  /** Working directory; default this process's. */
  cwd?: string | undefined;
}

/** Runs `cmd args…` to its end and returns its output, whatever its exit code. */
export async function runCommand(
  cmd: string,
  args: readonly string[],
  options: RunCommandOptions = {},
): Promise<CommandOutput> {
  const child = new Deno.Command(cmd, {
    args: [...args],
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    ...(options.env ? { env: options.env } : {}),
    ...(options.cwd ? { cwd: options.cwd } : {}),
  }).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const out = await child.output();
  const decoder = new TextDecoder();
  return {
    code: out.code,
    success: out.success,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
}
