//! `-j` targets and their options, parsed into [`Target`].
//!
//! Contract: never panics; an option is claimed only by a target that has
//! it; every error names the option and the word. Spellings and defaults
//! follow the iptables 1.8.9 extensions (libxt_NAME.c, libipt_NAME.c) and
//! the meaning the kernel's xt_NAME.c gives them. Normalisations: every
//! MARK and CONNMARK spelling becomes `--set-xmark V/M` (the kernel computes
//! `(mark & !M) ^ V`: `--or-mark V` is `V/V`, `--and-mark V` is `0/!V`,
//! `--xor-mark V` is `V/0`, `--set-mark V/M` is `V/(M|V)`); defaults that
//! iptables-save leaves out (`--log-level 4`, `--nflog-group 0`) are
//! stored as absent; REJECT without
//! `--reject-with` is `icmp-port-unreachable`.

use super::args::{bad, bad_because, no_neg, show, twice, Cursor, LineError, Res};
use super::lex::Word;
use super::matches::Head;
use super::value;
use crate::ruleset::{
    AddrRange, ConnmarkOp, CtTarget, LogTarget, NatRange, NflogTarget, PortRange, Proto, RejectWith, Target,
};

/// Targets iptables has and natpath does not model: kept as
/// [`Target::Unsupported`] in lenient mode, an error otherwise. Any other
/// name after `-j` is a user chain.
const UNMODELLED: &[&str] = &[
    "AUDIT",
    "CHAOS",
    "CLASSIFY",
    "CLUSTERIP",
    "CONNSECMARK",
    "DELUDE",
    "DNPT",
    "DSCP",
    "ECN",
    "HL",
    "HMARK",
    "IDLETIMER",
    "IPMARK",
    "LED",
    "MIRROR",
    "NETMAP",
    "NFQUEUE",
    "QUEUE",
    "RATEEST",
    "SAME",
    "SECMARK",
    "SET",
    "SNPT",
    "SYNPROXY",
    "TARPIT",
    "TCPOPTSTRIP",
    "TEE",
    "TOS",
    "TPROXY",
    "TTL",
    "ULOG",
];

/// The longest name in [`UNMODELLED`].
const MAX_UNMODELLED: usize = 11;

/// What a `-j NAME` (or `-g NAME`) word names.
pub(crate) enum Kind {
    /// A target natpath models.
    Known(Builder),
    /// A target natpath does not model.
    Unmodelled,
    /// A user chain.
    Chain,
}

/// Classify the name after `-j`.
pub(crate) fn kind(name: &str) -> Kind {
    let b = match name {
        "ACCEPT" => Builder::Plain(Target::Accept),
        "DROP" => Builder::Plain(Target::Drop),
        "RETURN" => Builder::Plain(Target::Return),
        "NOTRACK" => Builder::Plain(Target::Notrack),
        "TRACE" => Builder::Plain(Target::Trace),
        "REJECT" => Builder::Reject(None),
        "DNAT" => Builder::Dnat { to: None, random: false, persistent: false },
        "SNAT" => Builder::Snat { to: None, random: false, random_fully: false, persistent: false },
        "MASQUERADE" => Builder::Masquerade { ports: None, random: false, random_fully: false },
        "REDIRECT" => Builder::Redirect { ports: None, random: false },
        "MARK" => Builder::Mark(None),
        "CONNMARK" => Builder::Connmark { op: None, nfmask: None, ctmask: None },
        "CT" => Builder::Ct(CtTarget::default(), 0),
        "LOG" => Builder::Log(LogTarget::default(), 0),
        "NFLOG" => Builder::Nflog(NflogTarget::default(), 0),
        "CHECKSUM" => Builder::Checksum(false),
        "TCPMSS" => Builder::Tcpmss(None),
        // Chain names are mostly long (`KUBE-SEP-...`): rule them out by
        // length before comparing (every jump to a chain comes here).
        _ if name.len() <= MAX_UNMODELLED && UNMODELLED.contains(&name) => return Kind::Unmodelled,
        _ => return Kind::Chain,
    };
    Kind::Known(b)
}

/// The table a target is restricted to by the kernel, if any.
pub(crate) fn only_table(t: &Target) -> Option<crate::ruleset::TableName> {
    use crate::ruleset::TableName;
    match t {
        Target::Dnat { .. } | Target::Snat { .. } | Target::Masquerade { .. } | Target::Redirect { .. } => {
            Some(TableName::Nat)
        }
        Target::Notrack | Target::Ct(_) => Some(TableName::Raw),
        Target::Checksum => Some(TableName::Mangle),
        // ipt_REJECT is bound to filter (`.table`), not only to its hooks.
        Target::Reject(_) => Some(TableName::Filter),
        // Targets natpath keeps without modelling them, by their modules'
        // `.table` (checked with iptables-restore 1.8.9).
        Target::Unsupported { name, .. } => match name.as_str() {
            "TPROXY" | "DSCP" | "TOS" | "TTL" => Some(TableName::Mangle),
            "NETMAP" => Some(TableName::Nat),
            _ => None,
        },
        _ => None,
    }
}

/// How a CONNMARK rule was written, before masks are applied.
pub(crate) enum ConnOp {
    Xmark(u32, u32),
    Save,
    Restore,
}

/// A target being read.
pub(crate) enum Builder {
    Plain(Target),
    Reject(Option<RejectWith>),
    Dnat { to: Option<NatRange>, random: bool, persistent: bool },
    Snat { to: Option<NatRange>, random: bool, random_fully: bool, persistent: bool },
    Masquerade { ports: Option<PortRange>, random: bool, random_fully: bool },
    Redirect { ports: Option<PortRange>, random: bool },
    Mark(Option<(u32, u32)>),
    Connmark { op: Option<ConnOp>, nfmask: Option<u32>, ctmask: Option<u32> },
    Ct(CtTarget, u8),
    Log(LogTarget, u8),
    Nflog(NflogTarget, u8),
    Checksum(bool),
    Tcpmss(Option<Option<u16>>),
    Chain { name: String, goto: bool },
    Unsupported(String, Vec<String>),
}

const CT_EVENTS: [&str; 11] =
    ["new", "related", "destroy", "reply", "assured", "protoinfo", "helper", "mark", "natseqinfo", "secmark", "label"];

fn flag(b: &mut bool, opt: &Word<'_>, neg: bool) -> Res<()> {
    if neg {
        return Err(no_neg(opt));
    }
    if *b {
        return Err(twice(opt));
    }
    *b = true;
    Ok(())
}

fn seen_bit(seen: &mut u8, bit: u8, opt: &Word<'_>) -> Res<()> {
    if *seen & bit != 0 {
        return Err(twice(opt));
    }
    *seen |= bit;
    Ok(())
}

/// `[ADDR[-ADDR]][:PORT[-PORT]]` of `--to-destination`/`--to-source`.
fn nat_range(w: &Word<'_>, o: &str) -> Res<NatRange> {
    let s = w.as_str();
    let what = "an address range and/or port range `[ADDR[-ADDR]][:PORT[-PORT]]`";
    if s.starts_with('[') || s.matches(':').count() > 1 {
        return Err(LineError::ipv6(w.start, &format!("`{}` is an IPv6 address", show(s))));
    }
    if s.is_empty() || s.starts_with('-') {
        return Err(bad(w, o, what));
    }
    let (a, p) = match s.split_once(':') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addrs = if a.is_empty() {
        None
    } else {
        let one = |x: &str| {
            value::ipv4(x).map_err(|e| match e {
                value::AddrError::Ipv6 => LineError::ipv6(w.start, &format!("`{}` is an IPv6 address", show(s))),
                value::AddrError::Bad(why) if !why.is_empty() => bad_because(w, o, what, &why),
                value::AddrError::Bad(_) => bad(w, o, what),
            })
        };
        Some(match a.split_once('-') {
            Some((lo, hi)) => AddrRange { lo: one(lo)?, hi: one(hi)? },
            None => {
                let x = one(a)?;
                AddrRange { lo: x, hi: x }
            }
        })
    };
    let ports = match p {
        None => None,
        Some(p) => Some(nat_ports(w, p, o, what)?),
    };
    if addrs.is_none() && ports.is_none() {
        return Err(bad(w, o, what));
    }
    Ok(NatRange { addrs, ports })
}

fn nat_ports(w: &Word<'_>, p: &str, o: &str, what: &str) -> Res<PortRange> {
    if p.contains('/') {
        return Err(bad_because(w, o, what, "a base port (`/PORT`) is not supported by natpath"));
    }
    let r = value::port_range(p, '-').map_err(|why| {
        if why == "not a port" {
            bad(w, o, what)
        } else {
            bad_because(w, o, what, why)
        }
    })?;
    if r.lo == 0 || p.ends_with('-') || p.starts_with('-') {
        return Err(bad_because(w, o, what, "ports are 1-65535"));
    }
    Ok(r)
}

impl Builder {
    /// A jump or goto to user chain `name`.
    pub fn chain(name: &str, goto: bool) -> Builder {
        Builder::Chain { name: name.to_string(), goto }
    }

    /// A target natpath does not model (lenient mode).
    pub fn unsupported(name: &str) -> Builder {
        Builder::Unsupported(name.to_string(), Vec::new())
    }

    /// Whether this is the lenient placeholder.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Builder::Unsupported(..))
    }

    /// Keep a word of an unknown target's arguments.
    pub fn push_arg(&mut self, w: &str) {
        if let Builder::Unsupported(_, args) = self {
            args.push(w.to_string());
        }
    }

    /// Read option `opt` if this target has it; `Ok(false)` otherwise.
    pub fn option(&mut self, opt: &Word<'_>, neg: bool, cur: &mut Cursor<'_, '_>) -> Res<bool> {
        let o = opt.as_str();
        match self {
            Builder::Plain(_) | Builder::Chain { .. } | Builder::Unsupported(..) => return Ok(false),
            Builder::Reject(r) => match o {
                "--reject-with" => {
                    if neg {
                        return Err(no_neg(opt));
                    }
                    let v = cur.value(o, "a reject type")?;
                    let t = match v.as_str() {
                        "icmp-net-unreachable" | "net-unreach" => RejectWith::NetUnreachable,
                        "icmp-host-unreachable" | "host-unreach" => RejectWith::HostUnreachable,
                        "icmp-port-unreachable" | "port-unreach" => RejectWith::PortUnreachable,
                        "icmp-proto-unreachable" | "proto-unreach" => RejectWith::ProtoUnreachable,
                        "icmp-net-prohibited" | "net-prohib" => RejectWith::NetProhibited,
                        "icmp-host-prohibited" | "host-prohib" => RejectWith::HostProhibited,
                        "icmp-admin-prohibited" | "admin-prohib" => RejectWith::AdminProhibited,
                        "tcp-reset" | "tcp-rst" => RejectWith::TcpReset,
                        _ => return Err(bad(v, o, "a reject type such as `icmp-port-unreachable`")),
                    };
                    if r.is_some() {
                        return Err(twice(opt));
                    }
                    *r = Some(t);
                }
                _ => return Ok(false),
            },
            Builder::Dnat { to, random, persistent } => match o {
                "--to-destination" => {
                    if neg {
                        return Err(no_neg(opt));
                    }
                    let v = cur.value(o, "an address range and/or port range")?;
                    let r = nat_range(v, o)?;
                    if to.is_some() {
                        return Err(twice(opt));
                    }
                    *to = Some(r);
                }
                "--random" => flag(random, opt, neg)?,
                "--persistent" => flag(persistent, opt, neg)?,
                _ => return Ok(false),
            },
            Builder::Snat { to, random, random_fully, persistent } => match o {
                "--to-source" => {
                    if neg {
                        return Err(no_neg(opt));
                    }
                    let v = cur.value(o, "an address range and/or port range")?;
                    let r = nat_range(v, o)?;
                    if to.is_some() {
                        return Err(twice(opt));
                    }
                    *to = Some(r);
                }
                "--random" => flag(random, opt, neg)?,
                "--random-fully" => flag(random_fully, opt, neg)?,
                "--persistent" => flag(persistent, opt, neg)?,
                _ => return Ok(false),
            },
            Builder::Masquerade { ports, random, random_fully } => match o {
                "--to-ports" => {
                    if neg {
                        return Err(no_neg(opt));
                    }
                    let v = cur.value(o, "a port range `PORT[-PORT]`")?;
                    let r = nat_ports(v, v.as_str(), o, "a port range `PORT[-PORT]`")?;
                    if ports.is_some() {
                        return Err(twice(opt));
                    }
                    *ports = Some(r);
                }
                "--random" => flag(random, opt, neg)?,
                "--random-fully" => flag(random_fully, opt, neg)?,
                _ => return Ok(false),
            },
            Builder::Redirect { ports, random } => match o {
                "--to-ports" => {
                    if neg {
                        return Err(no_neg(opt));
                    }
                    let v = cur.value(o, "a port range `PORT[-PORT]`")?;
                    let r = nat_ports(v, v.as_str(), o, "a port range `PORT[-PORT]`")?;
                    if ports.is_some() {
                        return Err(twice(opt));
                    }
                    *ports = Some(r);
                }
                "--random" => flag(random, opt, neg)?,
                _ => return Ok(false),
            },
            Builder::Mark(m) => {
                let Some(xm) = mark_op(o, cur)? else { return Ok(false) };
                if neg {
                    return Err(no_neg(opt));
                }
                if m.is_some() {
                    return Err(LineError::new(opt.start, "`-j MARK` takes only one of `--set-xmark`, `--set-mark`, `--and-mark`, `--or-mark` and `--xor-mark`"));
                }
                *m = Some(xm);
            }
            Builder::Connmark { op, nfmask, ctmask } => {
                if neg {
                    return Err(no_neg(opt));
                }
                let one = "`-j CONNMARK` takes only one of `--set-xmark`, `--set-mark`, `--and-mark`, `--or-mark`, `--xor-mark`, `--save-mark` and `--restore-mark`";
                match o {
                    "--save-mark" | "--restore-mark" => {
                        if op.is_some() {
                            return Err(LineError::new(opt.start, one));
                        }
                        *op = Some(if o == "--save-mark" { ConnOp::Save } else { ConnOp::Restore });
                    }
                    "--nfmask" | "--ctmask" | "--mask" => {
                        let v = cur.value(o, "a mask")?;
                        let m = value::u32_any(v.as_str()).ok_or_else(|| bad(v, o, "a mask"))?;
                        if o != "--ctmask" {
                            *nfmask = Some(m);
                        }
                        if o != "--nfmask" {
                            *ctmask = Some(m);
                        }
                    }
                    _ => {
                        let Some((v, m)) = mark_op(o, cur)? else { return Ok(false) };
                        if op.is_some() {
                            return Err(LineError::new(opt.start, one));
                        }
                        *op = Some(ConnOp::Xmark(v, m));
                    }
                }
            }
            Builder::Ct(ct, seen) => match o {
                "--notrack" => {
                    if neg {
                        return Err(no_neg(opt));
                    }
                    seen_bit(seen, 1, opt)?;
                    ct.notrack = true;
                }
                "--helper" | "--timeout" | "--zone" | "--zone-orig" | "--zone-reply" | "--ctevents" | "--expevents" => {
                    if neg {
                        return Err(no_neg(opt));
                    }
                    let v = cur.value(o, "a value")?;
                    let s = v.as_str();
                    if !value::plain(s) {
                        return Err(bad_because(
                            v,
                            o,
                            "a value",
                            "values have no spaces, quotes or control characters",
                        ));
                    }
                    match o {
                        "--helper" => {
                            seen_bit(seen, 2, opt)?;
                            ct.helper = Some(s.to_string());
                        }
                        "--zone" => {
                            seen_bit(seen, 4, opt)?;
                            ct.zone = Some(ct_zone(v, o)?);
                        }
                        "--ctevents" | "--expevents" => {
                            let mut bits = [false; 11];
                            for part in s.split(',') {
                                let i = CT_EVENTS
                                    .iter()
                                    .position(|e| *e == part)
                                    .filter(|&i| o == "--ctevents" || i == 0)
                                    .ok_or_else(|| bad(v, o, "a list of conntrack events"))?;
                                if let Some(b) = bits.get_mut(i) {
                                    *b = true;
                                }
                            }
                            if ct.other.iter().any(|(k, _)| k == o) {
                                return Err(twice(opt));
                            }
                            let list: Vec<&str> =
                                CT_EVENTS.iter().zip(bits).filter(|(_, b)| *b).map(|(e, _)| *e).collect();
                            ct.other.push((o.to_string(), list.join(",")));
                        }
                        _ => {
                            if ct.other.iter().any(|(k, _)| k == o) {
                                return Err(twice(opt));
                            }
                            let val = if o == "--timeout" { s.to_string() } else { ct_zone(v, o)? };
                            ct.other.push((o.to_string(), val));
                        }
                    }
                    // iptables prints these in a fixed order.
                    let rank = |k: &str| {
                        ["--timeout", "--ctevents", "--expevents", "--zone-orig", "--zone-reply"]
                            .iter()
                            .position(|x| *x == k)
                    };
                    ct.other.sort_by_key(|(k, _)| rank(k));
                }
                _ => return Ok(false),
            },
            Builder::Log(l, seen) => match o {
                "--log-level" => {
                    if neg {
                        return Err(no_neg(opt));
                    }
                    seen_bit(seen, 1, opt)?;
                    let v = cur.value(o, "a log level (0-7 or a syslog name)")?;
                    let names = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];
                    let n = match v.as_str() {
                        "error" => Some(3),
                        "warn" => Some(4),
                        "panic" => Some(0),
                        s => names
                            .iter()
                            .position(|n| *n == s)
                            .or_else(|| value::dec(s).and_then(|n| usize::try_from(n).ok()).filter(|&n| n <= 7)),
                    };
                    let n = n.ok_or_else(|| bad(v, o, "a log level (0-7 or a syslog name)"))?;
                    l.level = u8::try_from(n).ok().filter(|&n| n != 4);
                }
                "--log-prefix" => {
                    if neg {
                        return Err(no_neg(opt));
                    }
                    seen_bit(seen, 2, opt)?;
                    let v = cur.value(o, "a prefix")?;
                    if v.as_str().is_empty() {
                        return Err(bad_because(v, o, "a prefix", "it must not be empty"));
                    }
                    if v.as_str().contains('\n') {
                        return Err(bad_because(v, o, "a prefix", "iptables refuses a newline in it"));
                    }
                    // ipt_LOG keeps 29 characters; iptables cuts longer ones.
                    let mut s = v.as_str();
                    if s.len() > 29 {
                        let mut end = 29;
                        while !s.is_char_boundary(end) {
                            end -= 1;
                        }
                        s = s.get(..end).unwrap_or("");
                    }
                    l.prefix = Some(s.to_string());
                }
                "--log-tcp-sequence" | "--log-tcp-options" | "--log-ip-options" | "--log-uid" | "--log-macdecode" => {
                    if neg {
                        return Err(no_neg(opt));
                    }
                    let order =
                        ["--log-tcp-sequence", "--log-tcp-options", "--log-ip-options", "--log-uid", "--log-macdecode"];
                    let flag = o.trim_start_matches("--").to_string();
                    if l.flags.contains(&flag) {
                        return Err(twice(opt));
                    }
                    l.flags.push(flag);
                    l.flags.sort_by_key(|f| order.iter().position(|x| x.trim_start_matches("--") == f));
                }
                _ => return Ok(false),
            },
            Builder::Nflog(n, seen) => match o {
                "--nflog-group" | "--nflog-threshold" | "--nflog-size" | "--nflog-range" => {
                    if neg {
                        return Err(no_neg(opt));
                    }
                    let v = cur.value(o, "a number")?;
                    let x = value::u32_any(v.as_str()).ok_or_else(|| bad(v, o, "a number"))?;
                    let small = || u16::try_from(x).map_err(|_| bad(v, o, "a number (0-65535)"));
                    match o {
                        "--nflog-group" => {
                            seen_bit(seen, 1, opt)?;
                            n.group = Some(small()?).filter(|&g| g != 0);
                        }
                        "--nflog-threshold" => {
                            seen_bit(seen, 2, opt)?;
                            n.threshold = Some(small()?);
                        }
                        "--nflog-size" => {
                            seen_bit(seen, 4, opt)?;
                            n.size = Some(x);
                        }
                        // The old --nflog-range sets a length the kernel
                        // ignores without NFLOG_F_COPY_LEN; iptables 1.8.9
                        // does not print it.
                        _ => seen_bit(seen, 8, opt)?,
                    }
                }
                "--nflog-prefix" => {
                    if neg {
                        return Err(no_neg(opt));
                    }
                    seen_bit(seen, 16, opt)?;
                    let v = cur.value(o, "a prefix")?;
                    if v.as_str().is_empty() {
                        return Err(bad_because(v, o, "a prefix", "it must not be empty"));
                    }
                    if v.as_str().contains('\n') {
                        return Err(bad_because(v, o, "a prefix", "iptables refuses a newline in it"));
                    }
                    n.prefix = Some(v.as_str().to_string());
                }
                _ => return Ok(false),
            },
            Builder::Checksum(f) => match o {
                "--checksum-fill" => flag(f, opt, neg)?,
                _ => return Ok(false),
            },
            Builder::Tcpmss(t) => match o {
                "--set-mss" => {
                    if neg {
                        return Err(no_neg(opt));
                    }
                    let v = cur.value(o, "an MSS (0-65515)")?;
                    let n = value::dec(v.as_str()).and_then(|n| u16::try_from(n).ok()).filter(|&n| n <= 65515);
                    let n = n.ok_or_else(|| bad(v, o, "an MSS (0-65515)"))?;
                    if t.is_some() {
                        return Err(LineError::new(
                            opt.start,
                            "`-j TCPMSS` takes only one of `--set-mss` and `--clamp-mss-to-pmtu`",
                        ));
                    }
                    *t = Some(Some(n));
                }
                "--clamp-mss-to-pmtu" => {
                    if neg {
                        return Err(no_neg(opt));
                    }
                    if t.is_some() {
                        return Err(LineError::new(
                            opt.start,
                            "`-j TCPMSS` takes only one of `--set-mss` and `--clamp-mss-to-pmtu`",
                        ));
                    }
                    *t = Some(None);
                }
                _ => return Ok(false),
            },
        }
        Ok(true)
    }

    /// The finished target; `at` is where its name was written.
    pub fn finish(self, head: &Head, at: usize) -> Res<Target> {
        let ports_ok = || head.proto.is_some_and(|p| !p.neg && matches!(p.value.0, 6 | 17 | 33 | 132));
        let need_ports = |t: &str| {
            LineError::new(at, format!("`-j {t}` with ports needs `-p tcp`, `-p udp`, `-p sctp` or `-p dccp`"))
        };
        Ok(match self {
            Builder::Plain(t) => t,
            Builder::Reject(r) => {
                let r = r.unwrap_or(RejectWith::PortUnreachable);
                if r == RejectWith::TcpReset && !head.proto.is_some_and(|p| !p.neg && p.value == Proto::TCP) {
                    return Err(LineError::new(at, "`-j REJECT --reject-with tcp-reset` needs `-p tcp`"));
                }
                Target::Reject(r)
            }
            Builder::Dnat { to, random, persistent } => {
                let to = to.ok_or_else(|| LineError::new(at, "`-j DNAT` needs `--to-destination`"))?;
                if to.ports.is_some() && !ports_ok() {
                    return Err(need_ports("DNAT"));
                }
                Target::Dnat { to: vec![to], random, persistent }
            }
            Builder::Snat { to, random, random_fully, persistent } => {
                let to = to.ok_or_else(|| LineError::new(at, "`-j SNAT` needs `--to-source`"))?;
                if to.ports.is_some() && !ports_ok() {
                    return Err(need_ports("SNAT"));
                }
                Target::Snat { to: vec![to], random, random_fully, persistent }
            }
            Builder::Masquerade { ports, random, random_fully } => {
                if ports.is_some() && !ports_ok() {
                    return Err(need_ports("MASQUERADE"));
                }
                Target::Masquerade { ports, random, random_fully }
            }
            Builder::Redirect { ports, random } => {
                if ports.is_some() && !ports_ok() {
                    return Err(need_ports("REDIRECT"));
                }
                Target::Redirect { ports, random }
            }
            Builder::Mark(m) => {
                let (value, mask) = m.ok_or_else(|| {
                    LineError::new(at, "`-j MARK` needs one of `--set-xmark`, `--set-mark`, `--and-mark`, `--or-mark` and `--xor-mark`")
                })?;
                Target::Mark { value, mask }
            }
            Builder::Connmark { op, nfmask, ctmask } => {
                let op = op.ok_or_else(|| {
                    LineError::new(
                        at,
                        "`-j CONNMARK` needs `--set-xmark`, `--save-mark`, `--restore-mark` or another mark option",
                    )
                })?;
                Target::Connmark(match op {
                    // Masks belong to --save-mark/--restore-mark only; with
                    // the mark-setting forms iptables ignores them.
                    ConnOp::Xmark(value, mask) => ConnmarkOp::SetXmark { value, mask },
                    ConnOp::Save => {
                        ConnmarkOp::Save { nfmask: nfmask.unwrap_or(u32::MAX), ctmask: ctmask.unwrap_or(u32::MAX) }
                    }
                    ConnOp::Restore => {
                        ConnmarkOp::Restore { nfmask: nfmask.unwrap_or(u32::MAX), ctmask: ctmask.unwrap_or(u32::MAX) }
                    }
                })
            }
            Builder::Ct(ct, _) => Target::Ct(Box::new(ct)),
            Builder::Log(l, _) => Target::Log(Box::new(l)),
            Builder::Nflog(n, _) => Target::Nflog(Box::new(n)),
            Builder::Checksum(f) => {
                if !f {
                    return Err(LineError::new(at, "`-j CHECKSUM` needs `--checksum-fill`"));
                }
                Target::Checksum
            }
            Builder::Tcpmss(t) => {
                let t =
                    t.ok_or_else(|| LineError::new(at, "`-j TCPMSS` needs `--set-mss` or `--clamp-mss-to-pmtu`"))?;
                Target::Tcpmss(t)
            }
            Builder::Chain { name, goto } => {
                if goto {
                    Target::Goto(name)
                } else {
                    Target::Jump(name)
                }
            }
            Builder::Unsupported(name, args) => Target::Unsupported { name, args },
        })
    }
}

/// A MARK-style option and its value as `(value, mask)` of `--set-xmark`;
/// `None` when `o` is not one of them.
fn mark_op(o: &str, cur: &mut Cursor<'_, '_>) -> Res<Option<(u32, u32)>> {
    let (what, with_mask) = match o {
        "--set-xmark" | "--set-mark" => ("a mark `VALUE[/MASK]`", true),
        "--and-mark" | "--or-mark" | "--xor-mark" => ("a mark value", false),
        _ => return Ok(None),
    };
    let v = cur.value(o, what)?;
    let (val, mask) = value::mark_mask(v.as_str()).ok_or_else(|| bad(v, o, what))?;
    if !with_mask && mask.is_some() {
        return Err(bad(v, o, what));
    }
    Ok(Some(match o {
        "--set-xmark" => (val, mask.unwrap_or(u32::MAX)),
        "--set-mark" => (val, mask.map_or(u32::MAX, |m| m | val)),
        "--and-mark" => (0, !val),
        "--or-mark" => (val, val),
        _ => (val, 0),
    }))
}

fn ct_zone(v: &Word<'_>, o: &str) -> Res<String> {
    let s = v.as_str();
    if s == "mark" || value::dec(s).and_then(|n| u16::try_from(n).ok()).is_some() {
        Ok(s.to_string())
    } else {
        Err(bad(v, o, "a zone number or `mark`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_unmodelled_is_the_longest() {
        assert_eq!(UNMODELLED.iter().map(|n| n.len()).max(), Some(MAX_UNMODELLED));
    }
}
