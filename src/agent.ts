/** Agent executable: parses flags, wires the parts, connects SIGTERM, starts. */
import { helpText, runCli, untilSignal } from "./cli.ts";
import { AGENT_FLAGS, parseAgentFlags } from "./agent/flags.ts";
import { withEarlyHealth } from "./health_server.ts";
import { Logger } from "./log.ts";
import { VERSION } from "./version.ts";

const SUMMARY = "Turns the IPRuleConfigs into this node's `ip rule` entries through netlink, " +
  "repairs drift, and reports the node's state in its IPRuleNodeState.";

if (import.meta.main) {
  await runCli("iprule-agent", async (args) => {
    const options = parseAgentFlags(args, {
      env: Deno.env.toObject(),
      isTerminal: Deno.stderr.isTerminal(),
      hostname: Deno.hostname(),
    });
    if (options.help) return console.log(helpText("iprule-agent", SUMMARY, AGENT_FLAGS));
    if (options.version) return console.log(VERSION);
    const log = new Logger({ format: options.logFormat, level: options.logLevel })
      .with({ component: "agent" });
    // The health endpoint listens before the rest loads and until all of it has stopped
    // (src/health_server.ts); one-shot runs serve none.
    const oneShot = options.once || options.dryRun;
    return await untilSignal(
      log,
      (signal) =>
        withEarlyHealth(oneShot ? undefined : options.healthAddr, log, async (health) => {
          const { runAgent } = await import("./agent/runner.ts");
          return await runAgent(options, log, signal, health ? { health } : {});
        }),
    );
  });
}
