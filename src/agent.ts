/** Agent executable: parses flags, wires the parts, connects SIGTERM, starts. */
import { helpText, runCli, untilSignal } from "./cli.ts";
import { AGENT_FLAGS, parseAgentFlags } from "./agent/flags.ts";
import { runAgent } from "./agent/runner.ts";
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
    return await untilSignal(log, (signal) => runAgent(options, log, signal));
  });
}
