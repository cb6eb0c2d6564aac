//! `-m` match modules: each option of each module the IR types, parsed
//! into [`Match`].
//!
//! Contract: never panics; an option is claimed only by a module that has
//! it (so the rule parser can look for its owner), and every error names
//! the option and the word. Each module follows its iptables 1.8.9
//! extension (extensions/libxt_NAME.c) for the spellings it accepts and the
//! defaults it fills in, and the kernel's xt_NAME.c for what the values
//! mean; normalisations that make equivalent spellings equal are noted at
//! each module (`--syn` is `--tcp-flags FIN,SYN,RST,ACK SYN`, `--pkt-type
//! host` is `unicast`, `! --connlimit-above` is `--connlimit-upto`).

use super::args::{bad, bad_because, no_neg, show, twice, Cursor, LineError, Res};
use super::lex::Word;
use super::value;
use crate::ruleset::{
    AddrRange, AddrTypeMatch, AddrTypes, ConnlimitMatch, ConntrackMatch, CtDir, CtStates, CtStatus, HashlimitMatch,
    IcmpType, MarkMask, Match, MultiportKind, Neg, OwnerMatch, PhysdevMatch, PktType, PolicyMatch, PortRange, Proto,
    Rate, RecentCmd, RecentMatch, SctpMatch, SetDir, SetMatch, StatisticMode, TcpFlags, TcpMatch, UdpMatch,
};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// What a finished module may need to know about its rule.
pub(crate) struct Head {
    /// The rule's `-p`.
    pub proto: Option<Neg<Proto>>,
}

impl Head {
    fn is(&self, p: Proto) -> bool {
        self.proto.is_some_and(|n| !n.neg && n.value == p)
    }
}

/// TCP flag names and bits (libxt_tcp; ECE and CWR are not known to
/// iptables 1.8.9).
const TCP_FLAGS: [(&str, u8); 6] = [("FIN", 1), ("SYN", 2), ("RST", 4), ("PSH", 8), ("ACK", 16), ("URG", 32)];

/// Names of ICMP types and codes (libxt_icmp): `(name, type, code range)`.
const ICMP_NAMES: &[(&str, u8, (u8, u8))] = &[
    ("any", 255, (0, 255)),
    ("echo-reply", 0, (0, 255)),
    ("pong", 0, (0, 255)),
    ("destination-unreachable", 3, (0, 255)),
    ("network-unreachable", 3, (0, 0)),
    ("host-unreachable", 3, (1, 1)),
    ("protocol-unreachable", 3, (2, 2)),
    ("port-unreachable", 3, (3, 3)),
    ("fragmentation-needed", 3, (4, 4)),
    ("source-route-failed", 3, (5, 5)),
    ("network-unknown", 3, (6, 6)),
    ("host-unknown", 3, (7, 7)),
    ("network-prohibited", 3, (9, 9)),
    ("host-prohibited", 3, (10, 10)),
    ("tos-network-unreachable", 3, (11, 11)),
    ("tos-host-unreachable", 3, (12, 12)),
    ("communication-prohibited", 3, (13, 13)),
    ("host-precedence-violation", 3, (14, 14)),
    ("precedence-cutoff", 3, (15, 15)),
    ("source-quench", 4, (0, 255)),
    ("redirect", 5, (0, 255)),
    ("network-redirect", 5, (0, 0)),
    ("host-redirect", 5, (1, 1)),
    ("tos-network-redirect", 5, (2, 2)),
    ("tos-host-redirect", 5, (3, 3)),
    ("echo-request", 8, (0, 255)),
    ("ping", 8, (0, 255)),
    ("router-advertisement", 9, (0, 255)),
    ("router-solicitation", 10, (0, 255)),
    ("time-exceeded", 11, (0, 255)),
    ("ttl-exceeded", 11, (0, 255)),
    ("ttl-zero-during-transit", 11, (0, 0)),
    ("ttl-zero-during-reassembly", 11, (1, 1)),
    ("parameter-problem", 12, (0, 255)),
    ("ip-header-bad", 12, (0, 0)),
    ("required-option-missing", 12, (1, 1)),
    ("timestamp-request", 13, (0, 255)),
    ("timestamp-reply", 14, (0, 255)),
    ("address-mask-request", 17, (0, 255)),
    ("address-mask-reply", 18, (0, 255)),
];

/// Conntrack state names and bits (xt_conntrack, xt_state).
const CT_STATES: [(&str, u8); 7] = [
    ("INVALID", CtStates::INVALID),
    ("NEW", CtStates::NEW),
    ("RELATED", CtStates::RELATED),
    ("ESTABLISHED", CtStates::ESTABLISHED),
    ("UNTRACKED", CtStates::UNTRACKED),
    ("SNAT", CtStates::SNAT),
    ("DNAT", CtStates::DNAT),
];

/// Conntrack status names (`--ctstatus`).
const CT_STATUS: [(&str, u8); 4] = [
    ("EXPECTED", CtStatus::EXPECTED),
    ("SEEN_REPLY", CtStatus::SEEN_REPLY),
    ("ASSURED", CtStatus::ASSURED),
    ("CONFIRMED", CtStatus::CONFIRMED),
];

/// SCTP chunk type names in type order (libxt_sctp).
pub(crate) const SCTP_CHUNKS: [&str; 15] = [
    "DATA",
    "INIT",
    "INIT_ACK",
    "SACK",
    "HEARTBEAT",
    "HEARTBEAT_ACK",
    "ABORT",
    "SHUTDOWN",
    "SHUTDOWN_ACK",
    "ERROR",
    "COOKIE_ECHO",
    "COOKIE_ACK",
    "ECN_ECNE",
    "ECN_CWR",
    "SHUTDOWN_COMPLETE",
];
const SCTP_CHUNKS_HIGH: [&str; 3] = ["ASCONF", "ASCONF_ACK", "FORWARD_TSN"];

/// The order iptables prints the elements of `-m policy` in.
pub(crate) const POLICY_ELEMENT_ORDER: [&str; 6] =
    ["--reqid", "--spi", "--proto", "--mode", "--tunnel-dst", "--tunnel-src"];

/// A match module being read.
pub(crate) enum Builder {
    Comment(Option<String>),
    Tcp(TcpMatch),
    Udp(UdpMatch),
    Sctp(SctpMatch),
    Icmp(Option<Neg<IcmpType>>),
    Multiport(Option<(MultiportKind, bool, Vec<PortRange>)>),
    Mark(Option<Neg<MarkMask>>),
    Connmark(Option<Neg<MarkMask>>),
    Conntrack(ConntrackMatch, bool),
    State(Option<Neg<CtStates>>),
    Statistic {
        mode: Option<(bool, usize)>,
        neg: bool,
        prob: Option<u32>,
        every: Option<u32>,
        packet: Option<u32>,
        at: usize,
    },
    Addrtype(AddrTypeMatch),
    Set(Option<SetMatch>, u8),
    Recent(Option<(bool, RecentCmd)>, RecentMatch, u16),
    Rpfilter([bool; 4]),
    Physdev(PhysdevMatch),
    Iprange(Option<Neg<AddrRange>>, Option<Neg<AddrRange>>),
    Limit(Option<Rate>, Option<u32>),
    Mac(Option<Neg<[u8; 6]>>),
    Owner(OwnerMatch),
    Pkttype(Option<Neg<PktType>>),
    Policy {
        dir: Option<bool>,
        pol: Option<bool>,
        strict: bool,
        elements: Vec<(String, bool, String)>,
    },
    Socket([bool; 3]),
    Length(Option<Neg<(u16, u16)>>),
    Hashlimit {
        m: HashlimitMatch,
        rate: Option<(bool, Rate, u32)>,
        /// Bit `i`: option `HL_ONCE[i]` was given.
        seen: u16,
    },
    Nfacct(Option<String>),
    Connlimit(Option<(bool, u32)>, Option<u8>, Option<bool>),
    Tos(Option<Neg<MarkMask>>),
    Dscp(Option<Neg<u8>>),
    Ttl(Option<(String, u8)>),
    Helper(Option<Neg<String>>),
    Unsupported(String, Vec<String>),
}

/// Match modules iptables has (its `libxt_*` and `libipt_*` extensions)
/// and natpath does not model: a rule using one is kept as
/// [`Match::Unsupported`](crate::ruleset::Match), and the verdicts that
/// depend on it are unknown. Any other unknown name is refused, as
/// iptables-restore refuses a module it cannot load.
pub const UNMODELLED: &[&str] = &[
    "ah",
    "bpf",
    "cgroup",
    "cluster",
    "connbytes",
    "connlabel",
    "cpu",
    "dccp",
    "devgroup",
    "ecn",
    "esp",
    "ipcomp",
    "ipvs",
    "l2tp",
    "osf",
    "quota",
    "rateest",
    "realm",
    "string",
    "tcpmss",
    "time",
    "u32",
    "udplite",
];

impl Builder {
    /// A fresh module for `-m NAME`; `None` when natpath does not know it.
    pub fn new(name: &str) -> Option<Builder> {
        Some(match name {
            "comment" => Builder::Comment(None),
            "tcp" => Builder::Tcp(TcpMatch::default()),
            "udp" => Builder::Udp(UdpMatch::default()),
            "sctp" => Builder::Sctp(SctpMatch::default()),
            "icmp" => Builder::Icmp(None),
            "multiport" => Builder::Multiport(None),
            "mark" => Builder::Mark(None),
            "connmark" => Builder::Connmark(None),
            "conntrack" => Builder::Conntrack(ConntrackMatch::default(), false),
            "state" => Builder::State(None),
            "statistic" => Builder::Statistic { mode: None, neg: false, prob: None, every: None, packet: None, at: 0 },
            "addrtype" => Builder::Addrtype(AddrTypeMatch::default()),
            "set" => Builder::Set(None, 0),
            "recent" => Builder::Recent(
                None,
                RecentMatch {
                    neg: false,
                    cmd: RecentCmd::Set,
                    name: "DEFAULT".into(),
                    rsource: true,
                    seconds: None,
                    hitcount: None,
                    reap: false,
                    rttl: false,
                    mask: Ipv4Addr::BROADCAST,
                },
                0,
            ),
            "rpfilter" => Builder::Rpfilter([false; 4]),
            "physdev" => Builder::Physdev(PhysdevMatch::default()),
            "iprange" => Builder::Iprange(None, None),
            "limit" => Builder::Limit(None, None),
            "mac" => Builder::Mac(None),
            "owner" => Builder::Owner(OwnerMatch::default()),
            "pkttype" => Builder::Pkttype(None),
            "policy" => Builder::Policy { dir: None, pol: None, strict: false, elements: Vec::new() },
            "socket" => Builder::Socket([false; 3]),
            "length" => Builder::Length(None),
            "hashlimit" => Builder::Hashlimit {
                m: HashlimitMatch {
                    above: false,
                    rate: Rate { count: 0, per_secs: 1 },
                    burst: 5,
                    mode: Vec::new(),
                    name: String::new(),
                    srcmask: None,
                    dstmask: None,
                    htable_size: None,
                    htable_max: None,
                    htable_expire: None,
                    htable_gcinterval: None,
                    rate_match: false,
                    rate_interval: None,
                },
                rate: None,
                seen: 0,
            },
            "nfacct" => Builder::Nfacct(None),
            "connlimit" => Builder::Connlimit(None, None, None),
            "tos" => Builder::Tos(None),
            "dscp" => Builder::Dscp(None),
            "ttl" => Builder::Ttl(None),
            "helper" => Builder::Helper(None),
            _ => return None,
        })
    }

    /// A module natpath does not model (lenient mode).
    pub fn unsupported(name: &str) -> Builder {
        Builder::Unsupported(name.to_string(), Vec::new())
    }

    /// The module for protocol `p`, as iptables loads it implicitly when an
    /// option after `-p tcp` (udp, sctp, icmp) belongs to no loaded module.
    pub fn for_proto(p: Proto) -> Option<Builder> {
        match p {
            Proto::TCP => Builder::new("tcp"),
            Proto::UDP => Builder::new("udp"),
            Proto::SCTP => Builder::new("sctp"),
            Proto::ICMP => Builder::new("icmp"),
            _ => None,
        }
    }

    /// Whether this is the lenient placeholder for an unknown module.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Builder::Unsupported(..))
    }

    /// Keep a word of an unknown module's arguments.
    pub fn push_arg(&mut self, w: &str) {
        if let Builder::Unsupported(_, args) = self {
            args.push(w.to_string());
        }
    }

    /// Read option `opt` (preceded by `!` when `neg`) if this module has
    /// it; `Ok(false)` (nothing consumed) when it does not.
    pub fn option(&mut self, opt: &Word<'_>, neg: bool, cur: &mut Cursor<'_, '_>) -> Res<bool> {
        let o = opt.as_str();
        match self {
            Builder::Comment(c) => match o {
                "--comment" => {
                    if neg {
                        return Err(no_neg(opt));
                    }
                    let v = cur.value(o, "a comment")?;
                    if c.is_some() {
                        return Err(twice(opt));
                    }
                    // xt_comment keeps 255 bytes; iptables cuts longer ones.
                    let mut s = v.as_str();
                    if s.len() > 255 {
                        let mut end = 255;
                        while !s.is_char_boundary(end) {
                            end -= 1;
                        }
                        s = s.get(..end).unwrap_or("");
                    }
                    *c = Some(s.to_string());
                }
                _ => return Ok(false),
            },
            Builder::Tcp(t) => match o {
                "--sport" | "--source-port" => set_once(&mut t.sport, opt, Neg { neg, value: ports(cur, o)? })?,
                "--dport" | "--destination-port" => set_once(&mut t.dport, opt, Neg { neg, value: ports(cur, o)? })?,
                "--syn" => set_once(&mut t.flags, opt, Neg { neg, value: TcpFlags { mask: 0x17, comp: 0x02 } })?,
                "--tcp-flags" => {
                    let m = cur.value(o, "a list of TCP flags")?;
                    let mask = tcp_flags(m, o)?;
                    let c = cur.value(o, "a second list of TCP flags")?;
                    let comp = tcp_flags(c, o)?;
                    set_once(&mut t.flags, opt, Neg { neg, value: TcpFlags { mask, comp } })?
                }
                "--tcp-option" => {
                    let v = cur.value(o, "a TCP option number")?;
                    let n = value::dec(v.as_str())
                        .and_then(|n| u8::try_from(n).ok())
                        .ok_or_else(|| bad(v, o, "a TCP option number (0-255)"))?;
                    set_once(&mut t.option, opt, Neg { neg, value: n })?
                }
                _ => return Ok(false),
            },
            Builder::Udp(u) => match o {
                "--sport" | "--source-port" => set_once(&mut u.sport, opt, Neg { neg, value: ports(cur, o)? })?,
                "--dport" | "--destination-port" => set_once(&mut u.dport, opt, Neg { neg, value: ports(cur, o)? })?,
                _ => return Ok(false),
            },
            Builder::Sctp(s) => match o {
                "--sport" | "--source-port" => set_once(&mut s.sport, opt, Neg { neg, value: ports(cur, o)? })?,
                "--dport" | "--destination-port" => set_once(&mut s.dport, opt, Neg { neg, value: ports(cur, o)? })?,
                "--chunk-types" => {
                    let m = cur.value(o, "`all`, `any` or `only`")?;
                    let mode = m.as_str().to_ascii_lowercase();
                    if !matches!(mode.as_str(), "all" | "any" | "only") {
                        return Err(bad(m, o, "`all`, `any` or `only`"));
                    }
                    let l = cur.value(o, "a list of SCTP chunk types")?;
                    let chunks = sctp_chunks(l, o)?;
                    set_once(&mut s.chunk_types, opt, Neg { neg, value: (mode, chunks) })?
                }
                _ => return Ok(false),
            },
            Builder::Icmp(t) => match o {
                "--icmp-type" => {
                    let v = cur.value(o, "an ICMP type")?;
                    set_once(t, opt, Neg { neg, value: icmp_type(v, o)? })?
                }
                _ => return Ok(false),
            },
            Builder::Multiport(m) => {
                let kind = match o {
                    "--sports" | "--source-ports" => MultiportKind::Source,
                    "--dports" | "--destination-ports" => MultiportKind::Destination,
                    "--ports" => MultiportKind::Either,
                    _ => return Ok(false),
                };
                let v = cur.value(o, "a list of ports")?;
                let mut list = Vec::new();
                let mut slots = 0usize;
                for part in v.as_str().split(',') {
                    let r = value::port_range(part, ':').map_err(|why| bad_because(v, o, "a list of ports", why))?;
                    slots += if r.lo == r.hi { 1 } else { 2 };
                    list.push(r);
                }
                if slots > 15 {
                    return Err(bad_because(v, o, "a list of ports", "more than 15 ports (a range counts as 2)"));
                }
                if m.is_some() {
                    return Err(LineError::new(
                        opt.start,
                        "`-m multiport` takes only one of `--sports`, `--dports` and `--ports`",
                    ));
                }
                *m = Some((kind, neg, list));
            }
            Builder::Mark(m) | Builder::Connmark(m) => match o {
                "--mark" => {
                    let v = cur.value(o, "a mark `VALUE[/MASK]`")?;
                    let (value, mask) =
                        value::mark_mask(v.as_str()).ok_or_else(|| bad(v, o, "a mark `VALUE[/MASK]`"))?;
                    set_once(m, opt, Neg { neg, value: MarkMask { value, mask: mask.unwrap_or(u32::MAX) } })?
                }
                _ => return Ok(false),
            },
            Builder::Conntrack(c, any) => {
                let mine = conntrack_option(c, opt, neg, cur)?;
                *any |= mine;
                return Ok(mine);
            }
            Builder::State(s) => match o {
                "--state" => {
                    let v = cur.value(o, "a list of states")?;
                    let st = ct_states(v, o, false)?;
                    set_once(s, opt, Neg { neg, value: st })?
                }
                _ => return Ok(false),
            },
            Builder::Statistic { mode, neg: sneg, prob, every, packet, at } => match o {
                "--mode" => {
                    if neg {
                        return Err(no_neg(opt));
                    }
                    let v = cur.value(o, "`random` or `nth`")?;
                    let random = match v.as_str() {
                        "random" => true,
                        "nth" => false,
                        _ => return Err(bad(v, o, "`random` or `nth`")),
                    };
                    if mode.is_some() {
                        return Err(twice(opt));
                    }
                    *mode = Some((random, opt.start));
                    *at = opt.start;
                }
                "--probability" => {
                    let v = cur.value(o, "a probability between 0 and 1")?;
                    let p = value::probability(v.as_str()).ok_or_else(|| bad(v, o, "a probability between 0 and 1"))?;
                    if prob.is_some() {
                        return Err(twice(opt));
                    }
                    *prob = Some(p);
                    *sneg |= neg;
                }
                "--every" => {
                    let v = cur.value(o, "a packet count (1 or more)")?;
                    let n = value::u32_any(v.as_str())
                        .filter(|&n| n >= 1)
                        .ok_or_else(|| bad(v, o, "a packet count (1 or more)"))?;
                    if every.is_some() {
                        return Err(twice(opt));
                    }
                    *every = Some(n);
                    *sneg |= neg;
                }
                "--packet" => {
                    if neg {
                        return Err(no_neg(opt));
                    }
                    let v = cur.value(o, "a packet number")?;
                    let n = value::u32_any(v.as_str()).ok_or_else(|| bad(v, o, "a packet number"))?;
                    if packet.is_some() {
                        return Err(twice(opt));
                    }
                    *packet = Some(n);
                }
                _ => return Ok(false),
            },
            Builder::Addrtype(a) => match o {
                "--src-type" | "--dst-type" => {
                    let v = cur.value(o, "a list of address types")?;
                    let mut bits = 0u16;
                    for part in v.as_str().split(',') {
                        let i =
                            AddrTypes::NAMES.iter().position(|n| n.eq_ignore_ascii_case(part)).ok_or_else(|| {
                                bad_because(v, o, "a list of address types", &format!("unknown type `{}`", show(part)))
                            })?;
                        bits |= 1u16.checked_shl(u32::try_from(i).unwrap_or(0)).unwrap_or(0);
                    }
                    let slot = if o == "--src-type" { &mut a.src_type } else { &mut a.dst_type };
                    set_once(slot, opt, Neg { neg, value: AddrTypes(bits) })?
                }
                "--limit-iface-in" | "--limit-iface-out" => {
                    if neg {
                        return Err(no_neg(opt));
                    }
                    if a.limit_iface_in || a.limit_iface_out {
                        return Err(LineError::new(
                            opt.start,
                            "`--limit-iface-in` and `--limit-iface-out` exclude each other",
                        ));
                    }
                    if o == "--limit-iface-in" {
                        a.limit_iface_in = true;
                    } else {
                        a.limit_iface_out = true;
                    }
                }
                _ => return Ok(false),
            },
            Builder::Set(s, seen) => return set_option(s, seen, opt, neg, cur),
            Builder::Recent(cmd, r, seen) => return recent_option(cmd, r, seen, opt, neg, cur),
            Builder::Rpfilter(f) => {
                let i = match o {
                    "--loose" => 0,
                    "--validmark" => 1,
                    "--accept-local" => 2,
                    "--invert" => 3,
                    _ => return Ok(false),
                };
                if neg {
                    return Err(no_neg(opt));
                }
                if let Some(b) = f.get_mut(i) {
                    if *b {
                        return Err(twice(opt));
                    }
                    *b = true;
                }
            }
            Builder::Physdev(p) => match o {
                "--physdev-in" | "--physdev-out" => {
                    let v = cur.value(o, "an interface name")?;
                    let i = value::iface(v.as_str()).map_err(|why| bad_because(v, o, "an interface name", &why))?;
                    let slot = if o == "--physdev-in" { &mut p.physdev_in } else { &mut p.physdev_out };
                    set_once(slot, opt, Neg { neg, value: i })?
                }
                "--physdev-is-in" => set_once(&mut p.is_in, opt, !neg)?,
                "--physdev-is-out" => set_once(&mut p.is_out, opt, !neg)?,
                "--physdev-is-bridged" => set_once(&mut p.is_bridged, opt, !neg)?,
                _ => return Ok(false),
            },
            Builder::Iprange(src, dst) => match o {
                "--src-range" | "--dst-range" => {
                    let v = cur.value(o, "an address range `FROM[-TO]`")?;
                    let r = addr_range(v, o)?;
                    let slot = if o == "--src-range" { src } else { dst };
                    set_once(slot, opt, Neg { neg, value: r })?
                }
                _ => return Ok(false),
            },
            Builder::Limit(rate, burst) => match o {
                "--limit" => {
                    if neg {
                        return Err(no_neg(opt));
                    }
                    let v = cur.value(o, "a rate `N/sec|min|hour|day`")?;
                    let (r, _) = value::rate(v.as_str(), 10_000)
                        .map_err(|why| bad_because(v, o, "a rate `N/sec|min|hour|day`", why))?;
                    set_once(rate, opt, r)?
                }
                "--limit-burst" => {
                    if neg {
                        return Err(no_neg(opt));
                    }
                    let v = cur.value(o, "a burst (0-10000)")?;
                    let n = value::u32_any(v.as_str())
                        .filter(|&n| n <= 10_000)
                        .ok_or_else(|| bad(v, o, "a burst (0-10000)"))?;
                    set_once(burst, opt, n)?
                }
                _ => return Ok(false),
            },
            Builder::Mac(m) => match o {
                "--mac-source" => {
                    let v = cur.value(o, "a MAC address such as `00:1b:21:3a:4c:5d`")?;
                    let mac =
                        value::mac(v.as_str()).ok_or_else(|| bad(v, o, "a MAC address such as `00:1b:21:3a:4c:5d`"))?;
                    set_once(m, opt, Neg { neg, value: mac })?
                }
                _ => return Ok(false),
            },
            Builder::Owner(w) => match o {
                "--uid-owner" | "--gid-owner" => {
                    let v = cur.value(o, "a user or group id")?;
                    let id = id_range(v, o)?;
                    let slot = if o == "--uid-owner" { &mut w.uid } else { &mut w.gid };
                    set_once(slot, opt, Neg { neg, value: id })?
                }
                "--socket-exists" => set_once(&mut w.socket_exists, opt, !neg)?,
                "--suppl-groups" => {
                    if neg {
                        return Err(no_neg(opt));
                    }
                    if w.suppl_groups {
                        return Err(twice(opt));
                    }
                    w.suppl_groups = true;
                }
                _ => return Ok(false),
            },
            Builder::Pkttype(p) => match o {
                "--pkt-type" => {
                    let v = cur.value(o, "`unicast`, `broadcast` or `multicast`")?;
                    let t = match v.as_str().to_ascii_lowercase().as_str() {
                        "unicast" | "host" => PktType::Unicast,
                        "broadcast" => PktType::Broadcast,
                        "multicast" => PktType::Multicast,
                        "otherhost" | "outgoing" | "loopback" | "fastroute" => {
                            return Err(bad_because(
                                v,
                                o,
                                "`unicast`, `broadcast` or `multicast`",
                                "natpath does not model this packet type",
                            ))
                        }
                        _ => return Err(bad(v, o, "`unicast`, `broadcast` or `multicast`")),
                    };
                    set_once(p, opt, Neg { neg, value: t })?
                }
                _ => return Ok(false),
            },
            Builder::Policy { dir, pol, strict, elements } => match o {
                "--dir" => {
                    if neg {
                        return Err(no_neg(opt));
                    }
                    let v = cur.value(o, "`in` or `out`")?;
                    let d = match v.as_str() {
                        "in" => true,
                        "out" => false,
                        _ => return Err(bad(v, o, "`in` or `out`")),
                    };
                    set_once(dir, opt, d)?
                }
                "--pol" => {
                    if neg {
                        return Err(no_neg(opt));
                    }
                    let v = cur.value(o, "`none` or `ipsec`")?;
                    let p = match v.as_str() {
                        "none" => false,
                        "ipsec" => true,
                        _ => return Err(bad(v, o, "`none` or `ipsec`")),
                    };
                    set_once(pol, opt, p)?
                }
                "--strict" => {
                    if neg {
                        return Err(no_neg(opt));
                    }
                    if *strict {
                        return Err(twice(opt));
                    }
                    *strict = true;
                }
                "--next" => {
                    if neg {
                        return Err(no_neg(opt));
                    }
                    elements.push(("--next".into(), false, String::new()));
                }
                "--reqid" | "--spi" | "--proto" | "--mode" | "--tunnel-src" | "--tunnel-dst" => {
                    let v = cur.value(o, "a value")?;
                    let s = policy_value(v, o)?;
                    let current = elements.iter().rev().take_while(|(k, _, _)| k != "--next");
                    if current.clone().any(|(k, _, _)| k == o) {
                        return Err(twice(opt));
                    }
                    elements.push((o.to_string(), neg, s));
                }
                _ => return Ok(false),
            },
            Builder::Socket(f) => {
                let i = match o {
                    "--transparent" => 0,
                    "--nowildcard" => 1,
                    "--restore-skmark" => 2,
                    _ => return Ok(false),
                };
                if neg {
                    return Err(no_neg(opt));
                }
                if let Some(b) = f.get_mut(i) {
                    if *b {
                        return Err(twice(opt));
                    }
                    *b = true;
                }
            }
            Builder::Length(l) => match o {
                "--length" => {
                    let v = cur.value(o, "a length `MIN[:MAX]`")?;
                    let r = value::port_range(v.as_str(), ':')
                        .map_err(|why| bad_because(v, o, "a length `MIN[:MAX]`", why))?;
                    set_once(l, opt, Neg { neg, value: (r.lo, r.hi) })?
                }
                _ => return Ok(false),
            },
            Builder::Hashlimit { m, rate, seen } => return hashlimit_option(m, rate, seen, opt, neg, cur),
            Builder::Nfacct(n) => match o {
                "--nfacct-name" => {
                    if neg {
                        return Err(no_neg(opt));
                    }
                    let v = cur.value(o, "an accounting object name")?;
                    set_once(n, opt, v.as_str().to_string())?
                }
                _ => return Ok(false),
            },
            Builder::Connlimit(limit, mask, saddr) => match o {
                "--connlimit-upto" | "--connlimit-above" => {
                    let v = cur.value(o, "a connection count")?;
                    let n = value::u32_any(v.as_str()).ok_or_else(|| bad(v, o, "a connection count"))?;
                    let above = (o == "--connlimit-above") != neg;
                    set_once(limit, opt, (above, n))?
                }
                "--connlimit-mask" => {
                    if neg {
                        return Err(no_neg(opt));
                    }
                    let v = cur.value(o, "a prefix length (0-32)")?;
                    let n = value::dec(v.as_str()).and_then(|n| u8::try_from(n).ok()).filter(|&n| n <= 32);
                    set_once(mask, opt, n.ok_or_else(|| bad(v, o, "a prefix length (0-32)"))?)?
                }
                "--connlimit-saddr" | "--connlimit-daddr" => {
                    if neg {
                        return Err(no_neg(opt));
                    }
                    set_once(saddr, opt, o == "--connlimit-saddr")?
                }
                _ => return Ok(false),
            },
            Builder::Tos(t) => match o {
                "--tos" => {
                    let v = cur.value(o, "a TOS value `VALUE[/MASK]` or name")?;
                    let named = [
                        ("Minimize-Delay", 0x10),
                        ("Maximize-Throughput", 0x08),
                        ("Maximize-Reliability", 0x04),
                        ("Minimize-Cost", 0x02),
                        ("Normal-Service", 0x00),
                    ];
                    let mm = if let Some((_, n)) = named.iter().find(|(k, _)| k.eq_ignore_ascii_case(v.as_str())) {
                        MarkMask { value: *n, mask: 0x3f }
                    } else {
                        let (val, mask) = value::mark_mask(v.as_str())
                            .filter(|(a, m)| *a <= 0xff && m.is_none_or(|m| m <= 0xff))
                            .ok_or_else(|| bad(v, o, "a TOS value `VALUE[/MASK]` or name"))?;
                        MarkMask { value: val, mask: mask.unwrap_or(0xff) }
                    };
                    set_once(t, opt, Neg { neg, value: mm })?
                }
                _ => return Ok(false),
            },
            Builder::Dscp(d) => match o {
                "--dscp" => {
                    let v = cur.value(o, "a DSCP value (0-63)")?;
                    let n = value::u32_any(v.as_str())
                        .filter(|&n| n <= 63)
                        .ok_or_else(|| bad(v, o, "a DSCP value (0-63)"))?;
                    set_once(d, opt, Neg { neg, value: u8::try_from(n).unwrap_or(0) })?
                }
                "--dscp-class" => {
                    let v = cur.value(o, "a DSCP class")?;
                    let n = dscp_class(v.as_str())
                        .ok_or_else(|| bad(v, o, "a DSCP class (`CS0`-`CS7`, `AF11`-`AF43`, `EF`, `BE`)"))?;
                    set_once(d, opt, Neg { neg, value: n })?
                }
                _ => return Ok(false),
            },
            Builder::Ttl(t) => {
                let op = match o {
                    "--ttl-eq" => {
                        if neg {
                            "ne"
                        } else {
                            "eq"
                        }
                    }
                    "--ttl-lt" | "--ttl-gt" => {
                        if neg {
                            return Err(no_neg(opt));
                        }
                        if o == "--ttl-lt" {
                            "lt"
                        } else {
                            "gt"
                        }
                    }
                    _ => return Ok(false),
                };
                let v = cur.value(o, "a TTL (0-255)")?;
                let n = value::dec(v.as_str())
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or_else(|| bad(v, o, "a TTL (0-255)"))?;
                if t.is_some() {
                    return Err(LineError::new(
                        opt.start,
                        "`-m ttl` takes only one of `--ttl-eq`, `--ttl-lt` and `--ttl-gt`",
                    ));
                }
                *t = Some((op.to_string(), n));
            }
            Builder::Helper(h) => match o {
                "--helper" => {
                    let v = cur.value(o, "a helper name")?;
                    set_once(h, opt, Neg { neg, value: v.as_str().to_string() })?
                }
                _ => return Ok(false),
            },
            Builder::Unsupported(..) => return Ok(false),
        }
        Ok(true)
    }

    /// The finished match; `name_at` is where `-m NAME` was written (for
    /// errors about a missing option).
    pub fn finish(self, head: &Head, name_at: usize) -> Res<Match> {
        let need = |module: &str, what: &str| LineError::new(name_at, format!("`-m {module}` needs {what}"));
        let need_proto =
            |module: &str, p: &str| LineError::new(name_at, format!("`-m {module}` needs `-p {p}` before or after it"));
        Ok(match self {
            Builder::Comment(c) => Match::Comment(c.ok_or_else(|| need("comment", "`--comment`"))?),
            Builder::Tcp(t) => {
                if !head.is(Proto::TCP) {
                    return Err(need_proto("tcp", "tcp"));
                }
                Match::Tcp(t)
            }
            Builder::Udp(u) => {
                if !head.is(Proto::UDP) {
                    return Err(need_proto("udp", "udp"));
                }
                Match::Udp(u)
            }
            Builder::Sctp(s) => {
                if !head.is(Proto::SCTP) {
                    return Err(need_proto("sctp", "sctp"));
                }
                Match::Sctp(Box::new(s))
            }
            Builder::Icmp(t) => {
                if !head.is(Proto::ICMP) {
                    return Err(need_proto("icmp", "icmp"));
                }
                Match::Icmp(Some(t.ok_or_else(|| need("icmp", "`--icmp-type`"))?))
            }
            Builder::Multiport(m) => {
                let (kind, neg, ports) = m.ok_or_else(|| need("multiport", "`--sports`, `--dports` or `--ports`"))?;
                let ok = head.proto.is_some_and(|p| !p.neg && matches!(p.value.0, 6 | 17 | 33 | 132 | 136));
                if !ok {
                    return Err(LineError::new(
                        name_at,
                        "`-m multiport` needs `-p tcp`, `-p udp`, `-p udplite`, `-p sctp` or `-p dccp`",
                    ));
                }
                Match::Multiport { kind, neg, ports }
            }
            Builder::Mark(m) => Match::Mark(m.ok_or_else(|| need("mark", "`--mark`"))?),
            Builder::Connmark(m) => Match::Connmark(m.ok_or_else(|| need("connmark", "`--mark`"))?),
            Builder::Conntrack(c, any) => {
                if !any {
                    return Err(need("conntrack", "an option such as `--ctstate`"));
                }
                Match::Conntrack(Box::new(c))
            }
            Builder::State(s) => Match::State(s.ok_or_else(|| need("state", "`--state`"))?),
            Builder::Statistic { mode, neg, prob, every, packet, at } => {
                let (random, _) = mode.ok_or_else(|| need("statistic", "`--mode random` or `--mode nth`"))?;
                let mode = if random {
                    if every.is_some() || packet.is_some() {
                        return Err(LineError::new(at, "`--every` and `--packet` belong to `--mode nth`"));
                    }
                    StatisticMode::Random {
                        p31: prob.ok_or_else(|| need("statistic", "`--probability` with `--mode random`"))?,
                    }
                } else {
                    if prob.is_some() {
                        return Err(LineError::new(at, "`--probability` belongs to `--mode random`"));
                    }
                    let every = every.ok_or_else(|| need("statistic", "`--every` with `--mode nth`"))?;
                    let packet = packet.ok_or_else(|| need("statistic", "`--packet` with `--every`"))?;
                    if packet >= every {
                        return Err(LineError::new(
                            at,
                            format!("`--packet {packet}` must be less than `--every {every}`"),
                        ));
                    }
                    StatisticMode::Nth { every, packet }
                };
                Match::Statistic { neg, mode }
            }
            Builder::Addrtype(a) => {
                if a.src_type.is_none() && a.dst_type.is_none() {
                    return Err(need("addrtype", "`--src-type` or `--dst-type`"));
                }
                Match::Addrtype(a)
            }
            Builder::Set(s, _) => Match::Set(Box::new(s.ok_or_else(|| need("set", "`--match-set`"))?)),
            Builder::Recent(cmd, mut r, _) => {
                let (neg, c) =
                    cmd.ok_or_else(|| need("recent", "one of `--set`, `--rcheck`, `--update` and `--remove`"))?;
                if r.reap && r.seconds.is_none() {
                    return Err(LineError::new(name_at, "`--reap` needs `--seconds`"));
                }
                r.neg = neg;
                r.cmd = c;
                Match::Recent(Box::new(r))
            }
            Builder::Rpfilter([loose, validmark, accept_local, invert]) => {
                Match::Rpfilter { loose, validmark, accept_local, invert }
            }
            Builder::Physdev(p) => {
                if p == PhysdevMatch::default() {
                    return Err(need("physdev", "an option such as `--physdev-is-in`"));
                }
                Match::Physdev(Box::new(p))
            }
            Builder::Iprange(src, dst) => {
                if src.is_none() && dst.is_none() {
                    return Err(need("iprange", "`--src-range` or `--dst-range`"));
                }
                Match::Iprange { src, dst }
            }
            Builder::Limit(rate, burst) => {
                Match::Limit { rate: rate.unwrap_or(Rate { count: 3, per_secs: 3600 }), burst: burst.unwrap_or(5) }
            }
            Builder::Mac(m) => Match::Mac(m.ok_or_else(|| need("mac", "`--mac-source`"))?),
            Builder::Owner(o) => {
                if o.uid.is_none() && o.gid.is_none() && o.socket_exists.is_none() {
                    return Err(need("owner", "`--uid-owner`, `--gid-owner` or `--socket-exists`"));
                }
                if o.suppl_groups && o.gid.is_none() {
                    return Err(LineError::new(name_at, "`--suppl-groups` needs `--gid-owner`"));
                }
                Match::Owner(Box::new(o))
            }
            Builder::Pkttype(p) => Match::Pkttype(p.ok_or_else(|| need("pkttype", "`--pkt-type`"))?),
            Builder::Policy { dir, pol, strict, elements } => {
                let dir_in = dir.ok_or_else(|| need("policy", "`--dir in` or `--dir out`"))?;
                let ipsec = pol.ok_or_else(|| need("policy", "`--pol none` or `--pol ipsec`"))?;
                Match::Policy(PolicyMatch { dir_in, ipsec, strict, elements: sort_policy(elements) })
            }
            Builder::Socket([transparent, nowildcard, restore_skmark]) => {
                Match::Socket { transparent, nowildcard, restore_skmark }
            }
            Builder::Length(l) => Match::Length(l.ok_or_else(|| need("length", "`--length`"))?),
            Builder::Hashlimit { mut m, rate, seen } => {
                let (above, r, user_unit) =
                    rate.ok_or_else(|| need("hashlimit", "`--hashlimit-upto` or `--hashlimit-above`"))?;
                if seen & HL_NAME == 0 {
                    return Err(need("hashlimit", "`--hashlimit-name`"));
                }
                m.above = above;
                m.rate = r;
                // libxt_hashlimit: with no --hashlimit-htable-expire, entries
                // live for the unit the rate was written in; iptables prints
                // the option only when it differs from the printed unit's.
                let expire = m.htable_expire.unwrap_or(user_unit.saturating_mul(1000));
                m.htable_expire = (expire != r.per_secs.saturating_mul(1000)).then_some(expire);
                Match::Hashlimit(Box::new(m))
            }
            Builder::Nfacct(n) => Match::Nfacct(n.ok_or_else(|| need("nfacct", "`--nfacct-name`"))?),
            Builder::Connlimit(limit, mask, saddr) => {
                let (above, count) =
                    limit.ok_or_else(|| need("connlimit", "`--connlimit-upto` or `--connlimit-above`"))?;
                Match::Connlimit(ConnlimitMatch {
                    above,
                    count,
                    mask: mask.unwrap_or(32),
                    saddr: saddr.unwrap_or(true),
                })
            }
            Builder::Tos(t) => Match::Tos(t.ok_or_else(|| need("tos", "`--tos`"))?),
            Builder::Dscp(d) => Match::Dscp(d.ok_or_else(|| need("dscp", "`--dscp` or `--dscp-class`"))?),
            Builder::Ttl(t) => {
                let (op, value) = t.ok_or_else(|| need("ttl", "`--ttl-eq`, `--ttl-lt` or `--ttl-gt`"))?;
                Match::Ttl { op, value }
            }
            Builder::Helper(h) => Match::Helper(h.ok_or_else(|| need("helper", "`--helper`"))?),
            Builder::Unsupported(module, args) => {
                super::unmodelled::check(&module, &args).map_err(|why| LineError::new(name_at, why))?;
                Match::Unsupported { module, args }
            }
        })
    }
}

/// Store `v` in `slot` unless the option was already given.
fn set_once<T>(slot: &mut Option<T>, opt: &Word<'_>, v: T) -> Res<()> {
    if slot.is_some() {
        return Err(twice(opt));
    }
    *slot = Some(v);
    Ok(())
}

fn ports(cur: &mut Cursor<'_, '_>, o: &str) -> Res<PortRange> {
    let v = cur.value(o, "a port")?;
    value::port_range(v.as_str(), ':').map_err(|why| {
        if why == "not a port" {
            bad(v, o, "a port")
        } else {
            bad_because(v, o, "a port", why)
        }
    })
}

fn tcp_flags(w: &Word<'_>, o: &str) -> Res<u8> {
    let mut bits = 0u8;
    for part in w.as_str().split(',') {
        bits |=
            if part.eq_ignore_ascii_case("ALL") {
                0x3f
            } else if part.eq_ignore_ascii_case("NONE") {
                0
            } else {
                TCP_FLAGS.iter().find(|(n, _)| n.eq_ignore_ascii_case(part)).map(|(_, b)| *b).ok_or_else(|| {
                    bad_because(w, o, "a list of TCP flags", &format!("unknown flag `{}`", show(part)))
                })?
            };
    }
    Ok(bits)
}

fn sctp_chunks(w: &Word<'_>, o: &str) -> Res<Vec<String>> {
    let mut out: Vec<(usize, String)> = Vec::new();
    for part in w.as_str().split(',') {
        let (name, flags) = match part.split_once(':') {
            Some((n, f)) => (n, Some(f)),
            None => (part, None),
        };
        let up = name.to_ascii_uppercase();
        let rank = if up == "ALL" || up == "NONE" {
            0
        } else if let Some(i) = SCTP_CHUNKS.iter().position(|c| *c == up) {
            i
        } else if let Some(i) = SCTP_CHUNKS_HIGH.iter().position(|c| *c == up) {
            100 + i
        } else {
            return Err(bad_because(
                w,
                o,
                "a list of SCTP chunk types",
                &format!("unknown chunk type `{}`", show(name)),
            ));
        };
        let text = match flags {
            Some(f) => format!("{up}:{f}"),
            None => up,
        };
        out.push((rank, text));
    }
    // iptables prints chunks in type order.
    out.sort_by_key(|(r, _)| *r);
    Ok(out.into_iter().map(|(_, t)| t).collect())
}

fn icmp_type(w: &Word<'_>, o: &str) -> Res<IcmpType> {
    let s = w.as_str();
    if let Some((_, ty, code)) = ICMP_NAMES.iter().find(|(n, _, _)| n.eq_ignore_ascii_case(s)) {
        return Ok(IcmpType { ty: *ty, code: *code });
    }
    let (t, c) = match s.split_once('/') {
        Some((t, c)) => (t, Some(c)),
        None => (s, None),
    };
    let ty = value::dec(t)
        .and_then(|v| u8::try_from(v).ok())
        .ok_or_else(|| bad(w, o, "an ICMP type `TYPE[/CODE]` or name"))?;
    let code = match c {
        None => (0, 255),
        Some(c) => {
            let c = value::dec(c)
                .and_then(|v| u8::try_from(v).ok())
                .ok_or_else(|| bad(w, o, "an ICMP type `TYPE[/CODE]` or name"))?;
            (c, c)
        }
    };
    if ty == 255 {
        return Ok(IcmpType { ty: 255, code: (0, 255) });
    }
    Ok(IcmpType { ty, code })
}

fn ct_states(w: &Word<'_>, o: &str, virtual_states: bool) -> Res<CtStates> {
    let mut bits = 0u8;
    for part in w.as_str().split(',') {
        let found = CT_STATES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(part))
            .filter(|(_, b)| virtual_states || *b < CtStates::SNAT);
        match found {
            Some((_, b)) => bits |= b,
            None => return Err(bad_because(w, o, "a list of states", &format!("unknown state `{}`", show(part)))),
        }
    }
    Ok(CtStates(bits))
}

fn conntrack_option(c: &mut ConntrackMatch, opt: &Word<'_>, neg: bool, cur: &mut Cursor<'_, '_>) -> Res<bool> {
    let o = opt.as_str();
    let net = |cur: &mut Cursor<'_, '_>| -> Res<Ipv4Net> {
        let v = cur.value(o, "an address")?;
        match value::ipv4_net(v.as_str()) {
            Ok(n) => Ok(n),
            Err(value::AddrError::Ipv6) => {
                Err(LineError::ipv6(v.start, &format!("`{}` is an IPv6 address", show(v.as_str()))))
            }
            Err(value::AddrError::Bad(why)) if why.is_empty() => Err(bad(v, o, "an IPv4 address")),
            Err(value::AddrError::Bad(why)) => Err(bad_because(v, o, "an IPv4 address", &why)),
        }
    };
    match o {
        "--ctstate" => {
            let v = cur.value(o, "a list of states")?;
            let s = ct_states(v, o, true)?;
            set_once(&mut c.state, opt, Neg { neg, value: s })?;
        }
        "--ctstatus" => {
            let v = cur.value(o, "a list of conntrack statuses")?;
            let mut bits = 0u8;
            for part in v.as_str().split(',') {
                let up = part.to_ascii_uppercase();
                if up == "NONE" {
                    continue;
                }
                match CT_STATUS.iter().find(|(n, _)| *n == up) {
                    Some((_, b)) => bits |= b,
                    None => {
                        return Err(bad_because(
                            v,
                            o,
                            "a list of conntrack statuses",
                            &format!("unknown status `{}`", show(part)),
                        ))
                    }
                }
            }
            set_once(&mut c.status, opt, Neg { neg, value: CtStatus(bits) })?;
        }
        "--ctproto" => {
            let v = cur.value(o, "a protocol")?;
            let p = value::proto(v.as_str()).ok_or_else(|| bad(v, o, "a protocol"))?;
            set_once(&mut c.proto, opt, Neg { neg, value: p })?;
        }
        "--ctorigsrc" => {
            let n = net(cur)?;
            set_once(&mut c.orig_src, opt, Neg { neg, value: n })?;
        }
        "--ctorigdst" => {
            let n = net(cur)?;
            set_once(&mut c.orig_dst, opt, Neg { neg, value: n })?;
        }
        "--ctreplsrc" => {
            let n = net(cur)?;
            set_once(&mut c.repl_src, opt, Neg { neg, value: n })?;
        }
        "--ctrepldst" => {
            let n = net(cur)?;
            set_once(&mut c.repl_dst, opt, Neg { neg, value: n })?;
        }
        "--ctorigsrcport" | "--ctorigdstport" | "--ctreplsrcport" | "--ctrepldstport" => {
            let r = ports(cur, o)?;
            let slot = match o {
                "--ctorigsrcport" => &mut c.orig_src_port,
                "--ctorigdstport" => &mut c.orig_dst_port,
                "--ctreplsrcport" => &mut c.repl_src_port,
                _ => &mut c.repl_dst_port,
            };
            set_once(slot, opt, Neg { neg, value: r })?;
        }
        "--ctexpire" => {
            let v = cur.value(o, "a time `MIN[:MAX]` in seconds")?;
            let parse = |s: &str| value::dec(s).and_then(|n| u32::try_from(n).ok());
            let (lo, hi) = match v.as_str().split_once(':') {
                Some((a, b)) => (parse(a), parse(b)),
                None => (parse(v.as_str()), parse(v.as_str())),
            };
            match (lo, hi) {
                (Some(lo), Some(hi)) if lo <= hi => set_once(&mut c.expire, opt, Neg { neg, value: (lo, hi) })?,
                _ => return Err(bad(v, o, "a time `MIN[:MAX]` in seconds")),
            }
        }
        "--ctdir" => {
            if neg {
                return Err(no_neg(opt));
            }
            let v = cur.value(o, "`ORIGINAL` or `REPLY`")?;
            let d = match v.as_str().to_ascii_uppercase().as_str() {
                "ORIGINAL" => CtDir::Original,
                "REPLY" => CtDir::Reply,
                _ => return Err(bad(v, o, "`ORIGINAL` or `REPLY`")),
            };
            set_once(&mut c.dir, opt, d)?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Seen-bits of `-m set` flags.
const SET_PACKETS: u8 = 1;
const SET_BYTES: u8 = 2;

fn set_option(
    s: &mut Option<SetMatch>,
    seen: &mut u8,
    opt: &Word<'_>,
    neg: bool,
    cur: &mut Cursor<'_, '_>,
) -> Res<bool> {
    let o = opt.as_str();
    match o {
        "--match-set" | "--set" => {
            let n = cur.value(o, "a set name")?;
            if n.as_str().is_empty() || n.as_str().len() > 31 {
                return Err(bad_because(n, o, "a set name", "set names have 1 to 31 characters"));
            }
            if !value::plain(n.as_str()) {
                return Err(bad_because(n, o, "a set name", "names have no spaces, quotes or control characters"));
            }
            let d = cur.value(o, "a list of `src`/`dst` flags")?;
            let mut dirs = Vec::new();
            // libxt_set compares the first three letters of each flag
            // (`strncmp(flag, "src", 3)`): `srcip` is `src` to iptables.
            for part in d.as_str().split(',') {
                dirs.push(if part.starts_with("src") {
                    SetDir::Src
                } else if part.starts_with("dst") {
                    SetDir::Dst
                } else {
                    return Err(bad(d, o, "a list of `src`/`dst` flags"));
                });
            }
            if dirs.len() > 6 {
                return Err(bad_because(d, o, "a list of `src`/`dst` flags", "at most 6"));
            }
            if s.is_some() {
                return Err(twice(opt));
            }
            *s = Some(SetMatch {
                neg,
                name: n.as_str().to_string(),
                dirs,
                return_nomatch: false,
                no_update_counters: false,
                no_update_subcounters: false,
                counter_conds: Vec::new(),
            });
        }
        "--return-nomatch" | "--update-counters" | "--update-subcounters" => {
            let target =
                s.as_mut().ok_or_else(|| LineError::new(opt.start, format!("`{o}` needs `--match-set` before it")))?;
            match o {
                "--return-nomatch" => {
                    if neg {
                        return Err(no_neg(opt));
                    }
                    target.return_nomatch = true;
                }
                // libxt_set only ever sets these flags: they may repeat,
                // and one negated among them skips the update.
                "--update-counters" => target.no_update_counters |= neg,
                _ => target.no_update_subcounters |= neg,
            }
        }
        "--packets-eq" | "--packets-lt" | "--packets-gt" | "--bytes-eq" | "--bytes-lt" | "--bytes-gt" => {
            let v = cur.value(o, "a number")?;
            let n = value::uint(v.as_str()).ok_or_else(|| bad(v, o, "a number"))?;
            if neg && !o.ends_with("-eq") {
                return Err(no_neg(opt));
            }
            let (bit, kind) = if o.starts_with("--packets") { (SET_PACKETS, "packets") } else { (SET_BYTES, "bytes") };
            if *seen & bit != 0 {
                return Err(LineError::new(
                    opt.start,
                    format!("only one of `--{kind}-eq`, `--{kind}-lt` and `--{kind}-gt` may be given"),
                ));
            }
            *seen |= bit;
            let target =
                s.as_mut().ok_or_else(|| LineError::new(opt.start, format!("`{o}` needs `--match-set` before it")))?;
            target.counter_conds.push((o.trim_start_matches('-').to_string(), neg, n));
            // iptables prints the packet condition before the byte condition.
            target.counter_conds.sort_by_key(|(k, _, _)| !k.starts_with("packets"));
        }
        _ => return Ok(false),
    }
    Ok(true)
}

const RECENT_SECONDS: u16 = 1;
const RECENT_HIT: u16 = 2;
const RECENT_NAME: u16 = 4;
const RECENT_DIR: u16 = 8;
const RECENT_MASK: u16 = 16;
const RECENT_REAP: u16 = 32;
const RECENT_RTTL: u16 = 64;

fn recent_option(
    cmd: &mut Option<(bool, RecentCmd)>,
    r: &mut RecentMatch,
    seen: &mut u16,
    opt: &Word<'_>,
    neg: bool,
    cur: &mut Cursor<'_, '_>,
) -> Res<bool> {
    let o = opt.as_str();
    let once = |seen: &mut u16, bit: u16| -> Res<()> {
        if neg {
            return Err(no_neg(opt));
        }
        if *seen & bit != 0 {
            return Err(twice(opt));
        }
        *seen |= bit;
        Ok(())
    };
    match o {
        "--set" | "--rcheck" | "--update" | "--remove" => {
            let c = match o {
                "--set" => RecentCmd::Set,
                "--rcheck" => RecentCmd::Rcheck,
                "--update" => RecentCmd::Update,
                _ => RecentCmd::Remove,
            };
            if cmd.is_some() {
                return Err(LineError::new(
                    opt.start,
                    "`-m recent` takes only one of `--set`, `--rcheck`, `--update` and `--remove`",
                ));
            }
            *cmd = Some((neg, c));
        }
        "--seconds" | "--hitcount" => {
            once(seen, if o == "--seconds" { RECENT_SECONDS } else { RECENT_HIT })?;
            let v = cur.value(o, "a number")?;
            let n = value::u32_any(v.as_str()).ok_or_else(|| bad(v, o, "a number"))?;
            if o == "--seconds" {
                r.seconds = Some(n);
            } else {
                r.hitcount = Some(n);
            }
        }
        "--reap" => {
            once(seen, RECENT_REAP)?;
            r.reap = true;
        }
        "--rttl" => {
            once(seen, RECENT_RTTL)?;
            r.rttl = true;
        }
        "--name" => {
            once(seen, RECENT_NAME)?;
            let v = cur.value(o, "a list name")?;
            if v.as_str().is_empty() || v.as_str().len() > 199 {
                return Err(bad_because(v, o, "a list name", "names have 1 to 199 characters"));
            }
            if !value::plain(v.as_str()) {
                return Err(bad_because(v, o, "a list name", "names have no spaces, quotes or control characters"));
            }
            r.name = v.as_str().to_string();
        }
        "--rsource" | "--rdest" => {
            once(seen, RECENT_DIR)?;
            r.rsource = o == "--rsource";
        }
        "--mask" => {
            once(seen, RECENT_MASK)?;
            let v = cur.value(o, "a netmask")?;
            r.mask = value::ipv4(v.as_str()).map_err(|_| bad(v, o, "a netmask"))?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn addr_range(w: &Word<'_>, o: &str) -> Res<AddrRange> {
    let one = |s: &str| match value::ipv4(s) {
        Ok(a) => Ok(a),
        Err(value::AddrError::Ipv6) => Err(LineError::ipv6(w.start, &format!("`{}` is an IPv6 address", show(s)))),
        Err(value::AddrError::Bad(_)) => Err(bad(w, o, "an address range `FROM[-TO]`")),
    };
    match w.as_str().split_once('-') {
        Some((a, b)) => Ok(AddrRange { lo: one(a)?, hi: one(b)? }),
        None => {
            let a = one(w.as_str())?;
            Ok(AddrRange { lo: a, hi: a })
        }
    }
}

fn id_range(w: &Word<'_>, o: &str) -> Res<Result<(u32, u32), String>> {
    let s = w.as_str();
    if s.is_empty() {
        return Err(bad(w, o, "a user or group id"));
    }
    let num = |s: &str| value::dec(s).and_then(|n| u32::try_from(n).ok());
    if let Some((a, b)) = s.split_once('-') {
        if let (Some(a), Some(b)) = (num(a), num(b)) {
            if a > b {
                return Err(bad_because(w, o, "a user or group id", "the range is reversed"));
            }
            return Ok(Ok((a, b)));
        }
    }
    Ok(match num(s) {
        Some(n) => Ok((n, n)),
        // A name: iptables looks it up in the node's passwd/group files,
        // which a dump does not carry.
        None if value::plain(s) => Err(s.to_string()),
        None => {
            return Err(bad_because(w, o, "a user or group id", "names have no spaces, quotes or control characters"))
        }
    })
}

fn policy_value(w: &Word<'_>, o: &str) -> Res<String> {
    let s = w.as_str();
    Ok(match o {
        "--reqid" => value::u32_any(s).ok_or_else(|| bad(w, o, "a number"))?.to_string(),
        "--spi" => format!("{:#x}", value::u32_any(s).ok_or_else(|| bad(w, o, "a number"))?),
        "--proto" => match s.to_ascii_lowercase().as_str() {
            "esp" | "50" => "esp".into(),
            "ah" | "51" => "ah".into(),
            "ipcomp" | "108" => "ipcomp".into(),
            _ => return Err(bad(w, o, "`esp`, `ah` or `ipcomp`")),
        },
        "--mode" => match s {
            "tunnel" | "transport" => s.to_string(),
            _ => return Err(bad(w, o, "`tunnel` or `transport`")),
        },
        _ => match value::ipv4_net(s) {
            Ok(n) if n.prefix_len() == 32 => n.addr().to_string(),
            Ok(n) => n.to_string(),
            Err(value::AddrError::Ipv6) => {
                return Err(LineError::ipv6(w.start, &format!("`{}` is an IPv6 address", show(s))))
            }
            Err(_) => return Err(bad(w, o, "an IPv4 address")),
        },
    })
}

/// Put each element's options in the order iptables prints them.
fn sort_policy(elements: Vec<(String, bool, String)>) -> Vec<(String, bool, String)> {
    let rank = |k: &str| POLICY_ELEMENT_ORDER.iter().position(|o| *o == k).unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity(elements.len());
    let mut group: Vec<(String, bool, String)> = Vec::new();
    for e in elements {
        if e.0 == "--next" {
            group.sort_by_key(|(k, _, _)| rank(k));
            out.append(&mut group);
            out.push(e);
        } else {
            group.push(e);
        }
    }
    group.sort_by_key(|(k, _, _)| rank(k));
    out.append(&mut group);
    out
}

fn dscp_class(s: &str) -> Option<u8> {
    let up = s.to_ascii_uppercase();
    match up.as_str() {
        "EF" => return Some(46),
        "BE" => return Some(0),
        _ => {}
    }
    if let Some(n) = up.strip_prefix("CS") {
        let n: u8 = n.parse().ok()?;
        return (n <= 7).then_some(n * 8);
    }
    if let Some(n) = up.strip_prefix("AF") {
        let mut ch = n.chars();
        let x = ch.next()?.to_digit(10)?;
        let y = ch.next()?.to_digit(10)?;
        if ch.next().is_some() || !(1..=4).contains(&x) || !(1..=3).contains(&y) {
            return None;
        }
        return u8::try_from(x * 8 + y * 2).ok();
    }
    None
}

const HL_MODE: [&str; 4] = ["srcip", "srcport", "dstip", "dstport"];

/// The `-m hashlimit` options that may be given once each (libxt_hashlimit
/// refuses a second one); the rate options are checked together.
const HL_ONCE: [&str; 11] = [
    "--hashlimit-name",
    "--hashlimit-burst",
    "--hashlimit-mode",
    "--hashlimit-srcmask",
    "--hashlimit-dstmask",
    "--hashlimit-htable-size",
    "--hashlimit-htable-max",
    "--hashlimit-htable-expire",
    "--hashlimit-htable-gcinterval",
    "--hashlimit-rate-match",
    "--hashlimit-rate-interval",
];

/// The seen-bit of `--hashlimit-name` (`HL_ONCE[0]`).
const HL_NAME: u16 = 1;

fn hashlimit_option(
    m: &mut HashlimitMatch,
    rate: &mut Option<(bool, Rate, u32)>,
    seen: &mut u16,
    opt: &Word<'_>,
    neg: bool,
    cur: &mut Cursor<'_, '_>,
) -> Res<bool> {
    let o = opt.as_str();
    if !o.starts_with("--hashlimit") {
        return Ok(false);
    }
    if neg {
        return Err(no_neg(opt));
    }
    if let Some(i) = HL_ONCE.iter().position(|k| *k == o) {
        let bit = 1u16 << i;
        if *seen & bit != 0 {
            return Err(twice(opt));
        }
        *seen |= bit;
    }
    let num = |cur: &mut Cursor<'_, '_>, what: &str| -> Res<u32> {
        let v = cur.value(o, what)?;
        value::u32_any(v.as_str()).ok_or_else(|| bad(v, o, what))
    };
    let mask = |cur: &mut Cursor<'_, '_>| -> Res<Option<u8>> {
        let v = cur.value(o, "a prefix length (0-32)")?;
        let n = value::dec(v.as_str()).and_then(|n| u8::try_from(n).ok()).filter(|&n| n <= 32);
        let n = n.ok_or_else(|| bad(v, o, "a prefix length (0-32)"))?;
        Ok((n != 32).then_some(n))
    };
    match o {
        "--hashlimit" | "--hashlimit-upto" | "--hashlimit-above" => {
            let v = cur.value(o, "a rate `N/sec|min|hour|day`")?;
            if v.as_str().contains('b') {
                return Err(bad_because(
                    v,
                    o,
                    "a rate `N/sec|min|hour|day`",
                    "byte rates are not supported by natpath",
                ));
            }
            let (r, unit) = value::rate(v.as_str(), 1_000_000)
                .map_err(|why| bad_because(v, o, "a rate `N/sec|min|hour|day`", why))?;
            set_once(rate, opt, (o == "--hashlimit-above", r, unit))?;
        }
        "--hashlimit-burst" => m.burst = num(cur, "a burst")?,
        "--hashlimit-mode" => {
            let v = cur.value(o, "a list of `srcip`, `srcport`, `dstip`, `dstport`")?;
            let mut bits = [false; 4];
            for part in v.as_str().split(',') {
                let i = HL_MODE
                    .iter()
                    .position(|k| *k == part)
                    .ok_or_else(|| bad(v, o, "a list of `srcip`, `srcport`, `dstip`, `dstport`"))?;
                if let Some(b) = bits.get_mut(i) {
                    *b = true;
                }
            }
            m.mode = HL_MODE.iter().zip(bits).filter(|(_, b)| *b).map(|(k, _)| (*k).to_string()).collect();
        }
        "--hashlimit-name" => {
            let v = cur.value(o, "a name")?;
            if v.as_str().len() > 255 || !value::plain(v.as_str()) {
                return Err(bad(v, o, "a name"));
            }
            m.name = v.as_str().to_string();
        }
        "--hashlimit-srcmask" => m.srcmask = mask(cur)?,
        "--hashlimit-dstmask" => m.dstmask = mask(cur)?,
        "--hashlimit-htable-size" => m.htable_size = Some(num(cur, "a number")?).filter(|&n| n != 0),
        "--hashlimit-htable-max" => m.htable_max = Some(num(cur, "a number")?).filter(|&n| n != 0),
        "--hashlimit-htable-expire" => m.htable_expire = Some(num(cur, "a time in milliseconds")?),
        "--hashlimit-htable-gcinterval" => {
            m.htable_gcinterval = Some(num(cur, "a time in milliseconds")?).filter(|&n| n != 1000)
        }
        "--hashlimit-rate-match" => m.rate_match = true,
        "--hashlimit-rate-interval" => m.rate_interval = Some(num(cur, "a time in seconds")?).filter(|&n| n != 1),
        _ => return Ok(false),
    }
    Ok(true)
}
