// The libmnl symbol table (libmnl.so.0, Debian package libmnl0), plus the few libc calls libmnl
// has no wrapper for. libc symbols resolve through libmnl's handle: dlsym() searches a library's
// dependencies, and libmnl links libc.so.6. Only ffi/netlink_socket.ts uses this table.

/** Symbols of libmnl and libc used by the netlink engine. */
export const LIBMNL_SYMBOLS = {
  // struct mnl_socket *mnl_socket_open2(int bus, int flags);
  mnl_socket_open2: { parameters: ["i32", "i32"], result: "pointer" },
  // int mnl_socket_bind(struct mnl_socket *nl, unsigned int groups, pid_t pid);
  mnl_socket_bind: { parameters: ["pointer", "u32", "i32"], result: "i32" },
  // int mnl_socket_get_fd(const struct mnl_socket *nl);
  mnl_socket_get_fd: { parameters: ["pointer"], result: "i32" },
  // unsigned int mnl_socket_get_portid(const struct mnl_socket *nl);
  mnl_socket_get_portid: { parameters: ["pointer"], result: "u32" },
  // ssize_t mnl_socket_sendto(const struct mnl_socket *nl, const void *buf, size_t len);
  mnl_socket_sendto: { parameters: ["pointer", "buffer", "usize"], result: "isize" },
  // The same call on a worker thread, for batches whose kernel work takes long.
  mnl_socket_sendto_nonblocking: {
    name: "mnl_socket_sendto",
    parameters: ["pointer", "buffer", "usize"],
    result: "isize",
    nonblocking: true,
  },
  // ssize_t mnl_socket_recvfrom(const struct mnl_socket *nl, void *buf, size_t bufsiz);
  mnl_socket_recvfrom: { parameters: ["pointer", "buffer", "usize"], result: "isize" },
  // int mnl_socket_setsockopt(const struct mnl_socket *nl, int type, void *buf, socklen_t len);
  mnl_socket_setsockopt: { parameters: ["pointer", "i32", "buffer", "u32"], result: "i32" },
  // int mnl_socket_close(struct mnl_socket *nl);
  mnl_socket_close: { parameters: ["pointer"], result: "i32" },

  // libc: int setsockopt(int fd, int level, int optname, const void *optval, socklen_t optlen);
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  // libc: int *__errno_location(void);  (the calling thread's errno)
  __errno_location: { parameters: [], result: "pointer" },
  // libc: void *memcpy(void *dest, const void *src, size_t n);  (reads errno: a pointer view
  // needs unscoped --allow-ffi, the agent only has --allow-ffi=<libmnl path>)
  memcpy: { parameters: ["buffer", "pointer", "usize"], result: "void" },
  // libc: int poll(struct pollfd *fds, nfds_t nfds, int timeout);
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  // The same call on a worker thread: waits for rule events without blocking the event loop.
  poll_nonblocking: {
    name: "poll",
    parameters: ["buffer", "u64", "i32"],
    result: "i32",
    nonblocking: true,
  },
  // libc: int eventfd(unsigned int initval, int flags);
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  // libc: ssize_t write(int fd, const void *buf, size_t count);
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  // libc: int close(int fd);
  close: { parameters: ["i32"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;
