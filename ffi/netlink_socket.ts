// The only user of the libmnl symbol table: one rtnetlink socket with its library handle,
// errno access and an optional wake-up eventfd. Internal to ffi/; callers use RuleSocket and
// RuleSubscription.
import {
  EAGAIN,
  EFD_CLOEXEC,
  EFD_NONBLOCK,
  MNL_SOCKET_AUTOPID,
  NETLINK_ROUTE,
  POLLERR,
  POLLIN,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOL_SOCKET,
} from "./constants.ts";
import { LibmnlLoadError, NetlinkError, type NetlinkOp } from "./errors.ts";
import { resolveLibmnlPath } from "./library.ts";
import { LIBMNL_SYMBOLS } from "./libmnl.ts";

type Libmnl = Deno.DynamicLibrary<typeof LIBMNL_SYMBOLS>;

/** Options of `NetlinkSocket.open`. */
export interface NetlinkSocketOptions {
  /** libmnl path; default $IPRULE_LIBMNL_PATH, else the Debian location. */
  libraryPath?: string | undefined;
  /** Multicast groups bitmask for bind(2). */
  groups?: number;
  /** Create an eventfd that `wake()` signals, to end a pending `waitAsync()`. */
  wakeable?: boolean;
  /** Operation named in errors. */
  op: NetlinkOp;
}

/** What `waitAsync` saw. */
export type WaitResult = "readable" | "woken" | "timeout";

/** A non-blocking rtnetlink socket (libmnl) with its own library handle. */
export class NetlinkSocket {
  #lib: Libmnl | undefined;
  #nl: Deno.PointerObject;
  #wakeFd = -1;
  #pending: Promise<unknown> | undefined;
  #closed = false;
  #released: Promise<void> | undefined;
  /** The socket's file descriptor. */
  readonly fd: number;
  /** The socket's netlink port id. */
  readonly portId: number;

  private constructor(lib: Libmnl, nl: Deno.PointerObject, portId: number) {
    this.#lib = lib;
    this.#nl = nl;
    this.fd = lib.symbols.mnl_socket_get_fd(nl);
    this.portId = portId;
  }

  /** Loads libmnl, opens and binds a NETLINK_ROUTE socket. */
  static open(options: NetlinkSocketOptions): NetlinkSocket {
    const path = resolveLibmnlPath(options.libraryPath);
    let lib: Libmnl;
    try {
      lib = Deno.dlopen(path, LIBMNL_SYMBOLS);
    } catch (error: unknown) {
      if (error instanceof Deno.errors.NotCapable) throw error;
      throw new LibmnlLoadError(path, { cause: error });
    }
    const nl = lib.symbols.mnl_socket_open2(NETLINK_ROUTE, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (nl === null) {
      const e = readErrno(lib);
      lib.close();
      throw new NetlinkError(options.op, e, { detail: "socket(AF_NETLINK) failed" });
    }
    if (lib.symbols.mnl_socket_bind(nl, options.groups ?? 0, MNL_SOCKET_AUTOPID) < 0) {
      const e = readErrno(lib);
      lib.symbols.mnl_socket_close(nl);
      lib.close();
      throw new NetlinkError(options.op, e, { detail: "bind(AF_NETLINK) failed" });
    }
    const socket = new NetlinkSocket(lib, nl, lib.symbols.mnl_socket_get_portid(nl));
    if (options.wakeable) {
      socket.#wakeFd = lib.symbols.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
      if (socket.#wakeFd < 0) {
        const e = readErrno(lib);
        socket.close();
        throw new NetlinkError(options.op, e, { detail: "eventfd failed" });
      }
    }
    return socket;
  }

  /** errno of the calling thread, right after a failed synchronous call. */
  #errno(): number {
    return this.#lib === undefined ? 0 : readErrno(this.#lib);
  }

  #symbols(): Libmnl["symbols"] {
    if (this.#lib === undefined || this.#closed) {
      throw new Deno.errors.BadResource("Netlink socket is closed");
    }
    return this.#lib.symbols;
  }

  /** True once `close()` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Sets a SOL_NETLINK option (int); returns 0 or a positive errno. */
  setNetlinkOption(name: number, value: number): number {
    const buf = new Uint8Array(new Int32Array([value]).buffer);
    return this.#symbols().mnl_socket_setsockopt(this.#nl, name, buf, 4) < 0 ? this.#errno() : 0;
  }

  /** Sets a SOL_SOCKET option (int) with libc setsockopt; returns 0 or a positive errno. */
  setSocketOption(name: number, value: number): number {
    const buf = new Uint8Array(new Int32Array([value]).buffer);
    return this.#symbols().setsockopt(this.fd, SOL_SOCKET, name, buf, 4) < 0 ? this.#errno() : 0;
  }

  /** Sends `bytes` on the event-loop thread; returns the bytes sent or a negative errno. */
  send(bytes: Uint8Array): number {
    const n = this.#symbols().mnl_socket_sendto(this.#nl, bytes, BigInt(bytes.length));
    return n < 0n ? -this.#errno() : Number(n);
  }

  /**
   * Sends `bytes` on a worker thread (the kernel applies a batch inside sendto, which can take
   * a second at 10k rules); returns the bytes sent or a negative errno. errno is per thread, so
   * a failed send is repeated on this thread to learn it (a failed sendto applied nothing).
   */
  async sendAsync(bytes: Uint8Array): Promise<number> {
    const call = this.#symbols().mnl_socket_sendto_nonblocking(
      this.#nl,
      bytes,
      BigInt(bytes.length),
    );
    this.#pending = call;
    let n: number | bigint;
    try {
      n = await call;
    } finally {
      this.#pending = undefined;
    }
    if (n >= 0) return Number(n);
    return this.#closed ? -EAGAIN : this.send(bytes);
  }

  /** Receives one datagram into `buf` without blocking; returns its length or a negative errno (-EAGAIN: nothing queued). */
  recv(buf: Uint8Array): number {
    const n = this.#symbols().mnl_socket_recvfrom(this.#nl, buf, BigInt(buf.length));
    return n < 0n ? -this.#errno() : Number(n);
  }

  /** Blocks up to `timeoutMs` until the socket is readable (or has an error); false on timeout. */
  waitSync(timeoutMs: number): boolean {
    const fds = this.#pollFds(false);
    return this.#symbols().poll(fds, 1n, timeoutMs) > 0;
  }

  /**
   * Waits on a worker thread up to `timeoutMs` until the socket is readable, `wake()` is
   * called, or the time is up; the event loop stays free.
   */
  async waitAsync(timeoutMs: number): Promise<WaitResult> {
    const fds = this.#pollFds(true);
    const call = this.#symbols().poll_nonblocking(fds, this.#wakeFd >= 0 ? 2n : 1n, timeoutMs);
    this.#pending = call;
    let n: number;
    try {
      n = await call;
    } finally {
      this.#pending = undefined;
    }
    const view = new DataView(fds.buffer);
    if (n > 0 && (view.getInt16(6, true) & (POLLIN | POLLERR)) !== 0) return "readable";
    if (n > 0) return "woken";
    return "timeout";
  }

  #pollFds(withWake: boolean): Uint8Array {
    // struct pollfd { int fd; short events; short revents; }
    const fds = new Uint8Array(16);
    const view = new DataView(fds.buffer);
    view.setInt32(0, this.fd, true);
    view.setInt16(4, POLLIN, true);
    view.setInt32(8, withWake ? this.#wakeFd : -1, true);
    view.setInt16(12, POLLIN, true);
    return fds;
  }

  /** Ends a pending `waitAsync()` at once (eventfd). */
  wake(): void {
    if (this.#wakeFd < 0 || this.#lib === undefined) return;
    const one = new Uint8Array(new BigUint64Array([1n]).buffer);
    this.#lib.symbols.write(this.#wakeFd, one, 8n);
  }

  /**
   * Closes the socket, the eventfd and the library handle; idempotent. With a call still
   * pending on a worker thread, wakes it and releases everything once it returns.
   */
  close(): Promise<void> {
    if (this.#released) return this.#released;
    this.#closed = true;
    const pending = this.#pending;
    if (pending === undefined) {
      this.#release();
      this.#released = Promise.resolve();
    } else {
      this.wake();
      this.#released = pending.then(() => this.#release(), () => this.#release());
    }
    return this.#released;
  }

  #release(): void {
    const lib = this.#lib;
    if (lib === undefined) return;
    this.#lib = undefined;
    if (this.#wakeFd >= 0) lib.symbols.close(this.#wakeFd);
    lib.symbols.mnl_socket_close(this.#nl);
    lib.close();
  }
}

const errnoCopy = new Int32Array(1);
const errnoBytes = new Uint8Array(errnoCopy.buffer);

/**
 * The calling thread's errno (looked up per call: each thread has its own), copied out with
 * memcpy: `Deno.UnsafePointerView` needs unscoped --allow-ffi, which the agent does not have.
 */
function readErrno(lib: Libmnl): number {
  const pointer = lib.symbols.__errno_location();
  if (pointer === null) return 0;
  lib.symbols.memcpy(errnoBytes, pointer, 4n);
  return errnoCopy[0]!;
}
