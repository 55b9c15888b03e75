import assert from "node:assert/strict";
import { errnoName, LibmnlLoadError, NetlinkError } from "./errors.ts";

const RULE = {
  family: 4,
  src: "10.0.0.1",
  srcLen: 32,
  table: 100,
  priority: 1000,
  protocol: 99,
} as const;

Deno.test("NetlinkError carries op, errno, code, extack and seq", () => {
  const error = new NetlinkError("add", 22, {
    rule: RULE,
    seq: 7,
    extack: "Invalid source address",
  });
  assert.equal(error.name, "NetlinkError");
  assert.equal(error.op, "add");
  assert.equal(error.errno, 22);
  assert.equal(error.code, "EINVAL");
  assert.equal(error.extack, "Invalid source address");
  assert.equal(error.seq, 7);
  assert.deepEqual(error.rule, RULE);
  assert.equal(
    error.message,
    'Cannot add rule "from 10.0.0.1 lookup 100 priority 1000 protocol 99": invalid argument (EINVAL), ' +
      'kernel says "Invalid source address"',
  );
});

Deno.test("NetlinkError names an existing or missing rule in plain words", () => {
  assert.match(
    new NetlinkError("add", 17, { rule: RULE }).message,
    /: the rule exists \(EEXIST\)$/,
  );
  assert.match(
    new NetlinkError("delete", 2, { rule: RULE }).message,
    /^Cannot delete rule .*: no such rule \(ENOENT\)$/,
  );
});

Deno.test("NetlinkError for EPERM hints at the NET_ADMIN capability", () => {
  const error = new NetlinkError("add", 1, { rule: RULE });
  assert.equal(error.code, "EPERM");
  assert.match(error.message, /NET_ADMIN/);
});

Deno.test("errnoName() maps Linux errno numbers to their names", () => {
  assert.equal(errnoName(1), "EPERM");
  assert.equal(errnoName(2), "ENOENT");
  assert.equal(errnoName(105), "ENOBUFS");
  assert.equal(errnoName(95), "EOPNOTSUPP");
});

Deno.test("LibmnlLoadError names the Debian package and the override", () => {
  const error = new LibmnlLoadError("/nowhere/libmnl.so.0", {
    cause: new Error("cannot open shared object file"),
  });
  assert.match(error.message, /^Cannot load libmnl from "\/nowhere\/libmnl\.so\.0"/);
  assert.match(error.message, /"libmnl0"/);
  assert.match(error.message, /IPRULE_LIBMNL_PATH/);
  assert.equal(error.path, "/nowhere/libmnl.so.0");
});
