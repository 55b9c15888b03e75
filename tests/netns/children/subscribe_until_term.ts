// Child process for the "ends the process promptly" test: subscribes, starts waiting for an
// event (the wait is then pending on a worker thread), says "ready", and on SIGTERM aborts the
// subscription and returns without Deno.exit(): the process must then exit by itself.
import { RuleSubscription } from "../../../ffi/mod.ts";

const controller = new AbortController();
const onTerm = () => controller.abort();
Deno.addSignalListener("SIGTERM", onTerm);
const subscription = RuleSubscription.open({ signal: controller.signal });
const events = subscription[Symbol.asyncIterator]();
let next = events.next(); // runs up to the pending wait
console.log("ready");
let count = 0;
while (!(await next).done) {
  count++;
  next = events.next();
}
Deno.removeSignalListener("SIGTERM", onTerm);
console.log(`closed after ${count} events`);
