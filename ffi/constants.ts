// Netlink, rtnetlink and fib-rule numbers from the Linux UAPI headers
// (linux/netlink.h, linux/rtnetlink.h, linux/fib_rules.h, linux/socket.h).

/** Length of `struct nlmsghdr` in bytes. */
export const NLMSG_HDRLEN = 16;
/** Length of `struct fib_rule_hdr` in bytes. */
export const FIB_RULE_HDRLEN = 12;
/** Length of `struct nlattr` in bytes. */
export const NLA_HDRLEN = 4;
/** Mask that strips `NLA_F_NESTED` and `NLA_F_NET_BYTEORDER` from an attribute type. */
export const NLA_TYPE_MASK = 0x3fff;

/** Netlink protocol of rtnetlink sockets. */
export const NETLINK_ROUTE = 0;

/** Control message: nothing to do. */
export const NLMSG_NOOP = 1;
/** Control message: error or acknowledgement. */
export const NLMSG_ERROR = 2;
/** Control message: end of a multipart dump. */
export const NLMSG_DONE = 3;
/** Control message: data lost. */
export const NLMSG_OVERRUN = 4;

/** Message type: add a rule (`ip rule add`), also the type of dump entries and add events. */
export const RTM_NEWRULE = 32;
/** Message type: delete a rule (`ip rule del`), also the type of delete events. */
export const RTM_DELRULE = 33;
/** Message type: dump rules (`ip rule show`). */
export const RTM_GETRULE = 34;

/** Flag: the message is a request. */
export const NLM_F_REQUEST = 0x1;
/** Flag: part of a multipart message. */
export const NLM_F_MULTI = 0x2;
/** Flag: reply with an acknowledgement (or an error). */
export const NLM_F_ACK = 0x4;
/** Flag: the dump was interrupted by a change; its content may be inconsistent. */
export const NLM_F_DUMP_INTR = 0x10;
/** Flag for GET requests: dump everything (`NLM_F_ROOT | NLM_F_MATCH`). */
export const NLM_F_DUMP = 0x300;
/** Flag for NEW requests: fail with EEXIST when the object exists (0x200 means BULK on DEL). */
export const NLM_F_EXCL = 0x200;
/** Flag for NEW requests: create the object. */
export const NLM_F_CREATE = 0x400;
/** Flag on an NLMSG_ERROR: the request was not echoed back (NETLINK_CAP_ACK). */
export const NLM_F_CAPPED = 0x100;
/** Flag on an NLMSG_ERROR: extended-ack attributes follow. */
export const NLM_F_ACK_TLVS = 0x200;

/** Extended-ack attribute: error message string. */
export const NLMSGERR_ATTR_MSG = 1;
/** Extended-ack attribute: offset of the offending attribute in the request. */
export const NLMSGERR_ATTR_OFFS = 2;

/** Address family IPv4. */
export const AF_INET = 2;
/** Address family IPv6. */
export const AF_INET6 = 10;
/** Address family unspecified (dumps every family). */
export const AF_UNSPEC = 0;

/** Rule attribute: destination address (network byte order). */
export const FRA_DST = 1;
/** Rule attribute: source address (network byte order). */
export const FRA_SRC = 2;
/** Rule attribute: input interface name. */
export const FRA_IIFNAME = 3;
/** Rule attribute: goto target priority. */
export const FRA_GOTO = 4;
/** Rule attribute: priority (`preference`), u32; dumps omit it when it is 0. */
export const FRA_PRIORITY = 6;
/** Rule attribute: firewall mark, u32. */
export const FRA_FWMARK = 10;
/** Rule attribute: realms (`flow`). */
export const FRA_FLOW = 11;
/** Rule attribute: tunnel id. */
export const FRA_TUN_ID = 12;
/** Rule attribute: suppress interface group, -1 when unset. */
export const FRA_SUPPRESS_IFGROUP = 13;
/** Rule attribute: suppress prefix length, -1 when unset. */
export const FRA_SUPPRESS_PREFIXLEN = 14;
/** Rule attribute: routing table id, u32 (the header byte cannot hold ids above 255). */
export const FRA_TABLE = 15;
/** Rule attribute: firewall mark mask, u32. */
export const FRA_FWMASK = 16;
/** Rule attribute: output interface name. */
export const FRA_OIFNAME = 17;
/** Rule attribute: padding. */
export const FRA_PAD = 18;
/** Rule attribute: l3mdev lookup, u8. */
export const FRA_L3MDEV = 19;
/** Rule attribute: uid range. */
export const FRA_UID_RANGE = 20;
/** Rule attribute: protocol (who installed the rule), u8. */
export const FRA_PROTOCOL = 21;
/** Rule attribute: IP protocol (`ipproto`), u8. */
export const FRA_IP_PROTO = 22;
/** Rule attribute: source port range. */
export const FRA_SPORT_RANGE = 23;
/** Rule attribute: destination port range. */
export const FRA_DPORT_RANGE = 24;
/** Highest rule attribute type this codec knows (FRA_DSCP_MASK in Linux 6.18). */
export const FRA_MAX_KNOWN = 30;

/** Rule action: look up a routing table. */
export const FR_ACT_TO_TBL = 1;
/** Rule action: jump to another rule. */
export const FR_ACT_GOTO = 2;
/** Rule action: do nothing. */
export const FR_ACT_NOP = 3;
/** Rule action: drop silently. */
export const FR_ACT_BLACKHOLE = 6;
/** Rule action: drop with "network unreachable". */
export const FR_ACT_UNREACHABLE = 7;
/** Rule action: drop with "prohibited". */
export const FR_ACT_PROHIBIT = 8;

/** Rule flag: invert the selector (`ip rule add not …`). */
export const FIB_RULE_INVERT = 0x2;

/** Routing table id that means "unspecified" in the header byte. */
export const RT_TABLE_UNSPEC = 0;
/** Highest table id the header byte can hold. */
export const RT_TABLE_MAX_BYTE = 255;

/** Multicast group of IPv4 rule changes. */
export const RTNLGRP_IPV4_RULE = 8;
/** Multicast group of IPv6 rule changes. */
export const RTNLGRP_IPV6_RULE = 19;

/** Socket level of netlink options. */
export const SOL_NETLINK = 270;
/** Netlink option: do not echo the request in acks. */
export const NETLINK_CAP_ACK = 10;
/** Netlink option: extended acks (kernel error messages). */
export const NETLINK_EXT_ACK = 11;
/** Socket level of generic socket options. */
export const SOL_SOCKET = 1;
/** Socket option: send buffer size. */
export const SO_SNDBUF = 7;
/** Socket option: receive buffer size (capped by net.core.rmem_max). */
export const SO_RCVBUF = 8;
/** Socket option: send buffer size past wmem_max (needs NET_ADMIN). */
export const SO_SNDBUFFORCE = 32;
/** Socket option: receive buffer size past rmem_max (needs NET_ADMIN). */
export const SO_RCVBUFFORCE = 33;
/** socket(2) flag: non-blocking. */
export const SOCK_NONBLOCK = 0o4000;
/** socket(2) flag: close on exec. */
export const SOCK_CLOEXEC = 0o2000000;
/** eventfd(2) flag: non-blocking. */
export const EFD_NONBLOCK = 0o4000;
/** eventfd(2) flag: close on exec. */
export const EFD_CLOEXEC = 0o2000000;
/** poll(2) event: data to read. */
export const POLLIN = 0x1;
/** poll(2) event: error pending. */
export const POLLERR = 0x8;
/** libmnl: let the kernel pick the port id. */
export const MNL_SOCKET_AUTOPID = 0;

/** errno: operation not permitted. */
export const EPERM = 1;
/** errno: no such file or directory (rule not found). */
export const ENOENT = 2;
/** errno: interrupted. */
export const EINTR = 4;
/** errno: try again (nothing to read on a non-blocking socket). */
export const EAGAIN = 11;
/** errno: file exists (rule exists). */
export const EEXIST = 17;
/** errno: invalid argument. */
export const EINVAL = 22;
/** errno: no space left (reply truncated). */
export const ENOSPC = 28;
/** errno: protocol error (a reply that does not parse). */
export const EPROTO = 71;
/** errno: message too long. */
export const EMSGSIZE = 90;
/** errno: no buffer space available (socket receive buffer overflowed). */
export const ENOBUFS = 105;
/** errno: timed out. */
export const ETIMEDOUT = 110;
