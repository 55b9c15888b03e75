/** Controller executable: parses flags, wires the parts, connects SIGTERM, starts. */
import { helpText, runCli, untilSignal } from "./cli.ts";
import { CONTROLLER_FLAGS, parseControllerFlags } from "./controller/flags.ts";
import { withEarlyHealth } from "./health_server.ts";
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
    // The health endpoint listens before the rest loads and until all of it has stopped
    // (src/health_server.ts).
    const code = await untilSignal(
      log,
      (signal) =>
        withEarlyHealth(options.healthAddr, log, async (health) => {
          const { runController } = await import("./controller/manager.ts");
          return await runController(options, log, signal, health ? { health } : {});
        }),
    );
    log.info("Controller stopped", { version: VERSION });
    return code;
  });
}
