/**
 * Runs an executable's entry point with `deno run` under exactly the permission flags that
 * `deno compile` bakes into it, and for the agent read access to its kubeconfig:
 * `deno run -A scripts/run.ts agent -- --once`.
 */
import { type Executable, EXECUTABLES, runFlags } from "./permissions.ts";

const [name, ...rest] = Deno.args;
if (!name || !(name in EXECUTABLES)) {
  console.error(`Usage: run.ts <${Object.keys(EXECUTABLES).join("|")}> [-- flags...]`);
  Deno.exit(2);
}
const { entry } = EXECUTABLES[name as Executable];
const root = new URL("..", import.meta.url).pathname;
const args = rest[0] === "--" ? rest.slice(1) : rest;
const flags = runFlags(name as Executable, args, Deno.env.toObject());
const child = new Deno.Command(Deno.execPath(), {
  args: ["run", "--quiet", ...flags, `${root}${entry}`, ...args],
  stdin: "inherit",
  stdout: "inherit",
  stderr: "inherit",
}).spawn();
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => child.kill(signal));
}
Deno.exit((await child.status).code);
