/** Controller executable: parses flags, wires the parts, connects SIGTERM, starts. */
import { helpText, runCli, untilSignal } from "./cli.ts";
import { CONTROLLER_FLAGS, parseControllerFlags } from "./controller/flags.ts";
import { runController } from "./controller/manager.ts";
import { Logger } from "./log.ts";
import { VERSION } from "./version.ts";

const SUMMARY = "Matches LoadBalancer Services against IPRules and writes IPRuleConfigs; " +
  "deploys the node agents from the Agent CR.";

if (import.meta.main) {
  await runCli("iprule-controller", async (args) => {
    const options = parseControllerFlags(args, {
      env: Deno.env.toObject(),
      isTerminal: Deno.stderr.isTerminal(),
    });
    if (options.help) return console.log(helpText("iprule-controller", SUMMARY, CONTROLLER_FLAGS));
    if (options.version) return console.log(VERSION);
    const log = new Logger({ format: options.logFormat, level: options.logLevel })
      .with({ component: "controller" });
    const code = await untilSignal(log, (signal) => runController(options, log, signal));
    log.info("Controller stopped", { version: VERSION });
    return code;
  });
}
