// Child process for the permission test: adds one rule and dumps, then prints what happened as
// JSON (run without NET_ADMIN by the test).
import { NetlinkError, RuleSocket } from "../../../ffi/mod.ts";

using socket = RuleSocket.open();
const [result] = await socket.addRules([
  { family: 4, src: "10.30.0.1", srcLen: 32, table: 1000, priority: 1000, protocol: 99 },
]);
const error = result?.error;
const dump = await socket.listRules();
console.log(JSON.stringify({
  isNetlinkError: error instanceof NetlinkError,
  op: error?.op,
  errno: error?.errno,
  code: error?.code,
  message: error?.message,
  dumped: dump.length,
}));
