/**
 * The tools the chart, monitoring and bundle tests run, built from upstream Go modules by
 * scripts/tools-build.sh into .cache/tools/bin/ (the test tiers build them first): helm,
 * prometheus, promtool and bundle-validate (operator-framework/api's validators).
 *
 * @module
 */
import { type CommandOutput, runCommand } from "./command.ts";

const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

/** Directory of the built tools; TOOLS_BIN_DIR overrides it. */
export const TOOLS_BIN_DIR = Deno.env.get("TOOLS_BIN_DIR") ?? `${ROOT}/.cache/tools/bin`;

/** A tool of scripts/tools-build.sh. */
export type Tool = "helm" | "prometheus" | "promtool" | "bundle-validate";

/** Outcome of one tool run. */
export type ToolResult = CommandOutput;

/** Path of a built tool; throws naming the build script when it is missing. */
export function toolPath(tool: Tool): string {
  const path = `${TOOLS_BIN_DIR}/${tool}`;
  try {
    Deno.statSync(path);
  } catch {
    throw new Error(
      `Missing "${path}": run ./scripts/tools-build.sh (the test tiers run it first)`,
    );
  }
  return path;
}

/** Runs a tool to its end with the repository root as working directory. */
export async function runTool(
  tool: Tool,
  args: readonly string[],
  options: { stdin?: string; env?: Record<string, string>; cwd?: string } = {},
): Promise<ToolResult> {
  // Async, so that a missing tool (toolPath throws) rejects like any other failure.
  return await runCommand(toolPath(tool), args, { ...options, cwd: options.cwd ?? ROOT });
}

/** Like runTool, but throws with the tool's output when it fails. */
export async function tool(
  name: Tool,
  args: readonly string[],
  options: { stdin?: string; env?: Record<string, string>; cwd?: string } = {},
): Promise<string> {
  const result = await runTool(name, args, options);
  if (!result.success) {
    throw new Error(
      `Command '${name} ${args.join(" ")}' exited with code ${result.code}: ${
        (result.stderr + result.stdout).trim()
      }`,
    );
  }
  return result.stdout;
}
