/** Agent executable: parses flags, wires the parts, connects SIGTERM, starts. */
import { helpText, runCli } from "./cli.ts";
import { AGENT_FLAGS, parseAgentFlags } from "./agent_flags.ts";
import { VERSION } from "./version.ts";

const SUMMARY = "Turns the IPRuleConfigs into this node's `ip rule` entries through netlink, " +
  "repairs drift, and reports the node's state in its IPRuleNodeState.";

if (import.meta.main) {
  await runCli("iprule-agent", (args) => {
    const options = parseAgentFlags(args, {
      env: Deno.env.toObject(),
      isTerminal: Deno.stderr.isTerminal(),
      hostname: Deno.hostname(),
    });
    if (options.help) return console.log(helpText("iprule-agent", SUMMARY, AGENT_FLAGS));
    if (options.version) return console.log(VERSION);
    console.error("iprule-agent: the reconciler is not wired yet");
    return 1;
  });
}
