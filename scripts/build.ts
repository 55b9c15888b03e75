/**
 * Compiles both executables into dist/ with `deno compile`, each with its permission flags
 * from scripts/permissions.ts. `deno compile` downloads the Deno runtime for the target; where
 * that download is impossible (machines without internet), this stops with a clear message.
 */
import { type Executable, EXECUTABLES } from "./permissions.ts";
import { VERSION } from "../src/version.ts";

const root = new URL("..", import.meta.url).pathname;
const names = (Deno.args.length ? Deno.args : Object.keys(EXECUTABLES)) as Executable[];
for (const name of names) {
  const exe = EXECUTABLES[name];
  if (!exe) {
    console.error(`Unknown executable "${name}" (expected ${Object.keys(EXECUTABLES).join(", ")})`);
    Deno.exit(2);
  }
  const output = `${root}dist/iprule-${name}`;
  const result = await new Deno.Command(Deno.execPath(), {
    args: ["compile", "--quiet", ...exe.flags, "--output", output, `${root}${exe.entry}`],
    stdout: "inherit",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(result.stderr);
  if (!result.success) {
    if (/download|dl\.deno\.land|error sending request|dns error|connect/i.test(stderr)) {
      console.error(
        `deno compile could not download the Deno runtime it embeds (no internet access here). ` +
          `Build on a machine that can reach dl.deno.land, or build the images (task image).\n` +
          stderr.trim(),
      );
    } else {
      console.error(stderr.trim());
    }
    Deno.exit(1);
  }
  console.log(`Built ${output} (version ${VERSION})`);
}
