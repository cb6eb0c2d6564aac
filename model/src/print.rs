//! The IR back to canonical iptables-save text.
//!
//! Contract: never panics; the text is what iptables-save 1.8.9
//! (nf_tables) prints for the same rules: `*table`, `:CHAIN POLICY [p:b]`
//! (`[0:0]` when no counters were read), the rules with their generic
//! options in the order `-s -d -i -o -p -f`, the `-m` modules in rule
//! order with each module's options in its own save order, then `-j`/`-g`,
//! and `COMMIT`; `# Generated`/`# Completed` lines are not written. Strings
//! are quoted as libxtables' `xtables_save_string` does (bare when they are
//! only letters, digits, `_` and `-`; else in `"` with `"`, `\` and `'`
//! escaped). Reading the text back with [`crate::parse::iptables::parse`]
//! gives an equal [`Ruleset`]: a table read without a `*table` line is
//! written without one, a block read without `COMMIT` is written without
//! it, and implied chains get no header, so partial dumps stay partial.

use crate::parse::iptables::{proto_name, unit_name};
use crate::ruleset::{
    AddrRange, AddrTypes, Chain, ConnmarkOp, CtStates, CtStatus, Iface, Match, MultiportKind, NatRange, Neg, PktType,
    PortRange, Proto, RecentCmd, Rule, Ruleset, SetDir, StatisticMode, TableForm, Target,
};
use ipnet::Ipv4Net;
use std::fmt::Write;

/// Canonical iptables-save text of a ruleset.
pub fn iptables_save(rs: &Ruleset) -> String {
    let rules: usize = rs.rule_count();
    let mut out = String::with_capacity(64 + rules * 160);
    let mut prev_headerless = false;
    for t in &rs.tables {
        match t.form {
            TableForm::Complete | TableForm::Unterminated => {
                out.push('*');
                out.push_str(t.name.as_str());
                out.push('\n');
            }
            // Two headerless tables in a row: COMMIT keeps them apart, so
            // each is inferred on its own when read back.
            TableForm::Headerless if prev_headerless => out.push_str("COMMIT\n"),
            TableForm::Headerless => {}
        }
        for c in t.chains.iter().filter(|c| !c.implied) {
            chain_header(&mut out, c);
        }
        for c in &t.chains {
            for r in &c.rules {
                if let Some(n) = r.counters.as_deref() {
                    let _ = write!(out, "[{}:{}] ", n.packets, n.bytes);
                }
                write_rule(&mut out, &c.name, r);
                out.push('\n');
            }
        }
        if t.form == TableForm::Complete {
            out.push_str("COMMIT\n");
        }
        prev_headerless = t.form == TableForm::Headerless;
    }
    out
}

/// The canonical `-A CHAIN ...` line of a rule (without counters).
pub fn rule_text(chain: &str, rule: &Rule) -> String {
    let mut out = String::with_capacity(160);
    write_rule(&mut out, chain, rule);
    out
}

fn chain_header(out: &mut String, c: &Chain) {
    out.push(':');
    out.push_str(&c.name);
    out.push_str(match c.policy {
        Some(crate::ruleset::Policy::Accept) => " ACCEPT",
        Some(crate::ruleset::Policy::Drop) => " DROP",
        None => " -",
    });
    let n = c.counters.unwrap_or_default();
    let _ = writeln!(out, " [{}:{}]", n.packets, n.bytes);
}

/// `xtables_save_string`: a space, then the string bare or quoted.
///
/// A string that ends with a newline can only have been read from a quote
/// left open at the end of its line (the parser splits lines at newlines):
/// it is written the same way, an opening `"` and no closing one, so that
/// the newline that ends the printed line ends the string again. The
/// parser reads such a word only when it is the last one the rule prints.
/// (iptables-save writes the newline inside the quotes and a lone `"` on
/// the next line, which iptables-restore refuses: natpath writes the form
/// that both read back.)
fn save_string(out: &mut String, s: &str) {
    out.push(' ');
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        out.push_str(s);
        return;
    }
    out.push('"');
    let (body, open) = match s.strip_suffix('\n') {
        Some(b) => (b, true),
        None => (s, false),
    };
    for c in body.chars() {
        if matches!(c, '"' | '\\' | '\'') {
            out.push('\\');
        }
        out.push(c);
    }
    if !open {
        out.push('"');
    }
}

/// A word of an unmodelled module's arguments, quoted when it would not
/// read back as one bare word (the parser keeps no value that starts with
/// `-` or is `!`, so bare option words stay options). Only space, tab,
/// newline and `"` end a bare word (a `\r` or another control character
/// is part of it), and a NUL is refused outside quotes.
fn raw_word(out: &mut String, s: &str) {
    if !s.is_empty() && !s.bytes().any(|b| matches!(b, b' ' | b'\t' | b'\n' | b'"' | 0)) {
        out.push(' ');
        out.push_str(s);
    } else {
        save_string(out, s);
    }
}

fn bang(out: &mut String, neg: bool) {
    if neg {
        out.push_str(" !");
    }
}

fn net(out: &mut String, n: &Ipv4Net) {
    let _ = write!(out, "{}/{}", n.addr(), n.prefix_len());
}

/// Conntrack and policy print a /32 without its length.
fn net_short(out: &mut String, n: &Ipv4Net) {
    if n.prefix_len() == 32 {
        let _ = write!(out, "{}", n.addr());
    } else {
        net(out, n);
    }
}

fn iface(out: &mut String, i: &Iface) {
    out.push_str(&i.name);
    if i.wildcard {
        out.push('+');
    }
}

fn proto(out: &mut String, p: Proto) {
    match proto_name(p) {
        Some(n) => out.push_str(n),
        None => {
            let _ = write!(out, "{}", p.0);
        }
    }
}

fn ports(out: &mut String, r: &PortRange, sep: char) {
    if r.lo == r.hi {
        let _ = write!(out, "{}", r.lo);
    } else {
        let _ = write!(out, "{}{sep}{}", r.lo, r.hi);
    }
}

fn opt_ports(out: &mut String, name: &str, p: &Option<Neg<PortRange>>) {
    if let Some(p) = p {
        bang(out, p.neg);
        out.push(' ');
        out.push_str(name);
        out.push(' ');
        ports(out, &p.value, ':');
    }
}

fn hex(out: &mut String, v: u32) {
    let _ = write!(out, "{v:#x}");
}

fn mark(out: &mut String, value: u32, mask: u32) {
    hex(out, value);
    if mask != u32::MAX {
        out.push('/');
        hex(out, mask);
    }
}

fn names(out: &mut String, list: &[(&str, bool)], none: &str) {
    let mut first = true;
    for (n, on) in list {
        if *on {
            if !first {
                out.push(',');
            }
            out.push_str(n);
            first = false;
        }
    }
    if first {
        out.push_str(none);
    }
}

fn states(out: &mut String, s: CtStates) {
    let list = [
        ("INVALID", s.has(CtStates::INVALID)),
        ("NEW", s.has(CtStates::NEW)),
        ("RELATED", s.has(CtStates::RELATED)),
        ("ESTABLISHED", s.has(CtStates::ESTABLISHED)),
        ("UNTRACKED", s.has(CtStates::UNTRACKED)),
        ("SNAT", s.has(CtStates::SNAT)),
        ("DNAT", s.has(CtStates::DNAT)),
    ];
    names(out, &list, "NONE");
}

fn addr_types(out: &mut String, t: AddrTypes) {
    let mut first = true;
    for (i, n) in AddrTypes::NAMES.iter().enumerate() {
        if t.0 & (1u16 << i) != 0 {
            if !first {
                out.push(',');
            }
            out.push_str(n);
            first = false;
        }
    }
}

fn tcp_flags(out: &mut String, bits: u8) {
    let list = [
        ("FIN", bits & 1 != 0),
        ("SYN", bits & 2 != 0),
        ("RST", bits & 4 != 0),
        ("PSH", bits & 8 != 0),
        ("ACK", bits & 16 != 0),
        ("URG", bits & 32 != 0),
    ];
    names(out, &list, "NONE");
}

fn range(out: &mut String, r: &AddrRange) {
    let _ = write!(out, "{}-{}", r.lo, r.hi);
}

fn nat_range(out: &mut String, r: &NatRange) {
    if let Some(a) = &r.addrs {
        if a.lo == a.hi {
            let _ = write!(out, "{}", a.lo);
        } else {
            range(out, a);
        }
    }
    if let Some(p) = &r.ports {
        out.push(':');
        ports(out, p, '-');
    }
}

fn write_rule(out: &mut String, chain: &str, r: &Rule) {
    out.push_str("-A ");
    out.push_str(chain);
    if let Some(s) = &r.src {
        bang(out, s.neg);
        out.push_str(" -s ");
        net(out, &s.value);
    }
    if let Some(d) = &r.dst {
        bang(out, d.neg);
        out.push_str(" -d ");
        net(out, &d.value);
    }
    if let Some(i) = &r.in_iface {
        bang(out, i.neg);
        out.push_str(" -i ");
        iface(out, &i.value);
    }
    if let Some(o) = &r.out_iface {
        bang(out, o.neg);
        out.push_str(" -o ");
        iface(out, &o.value);
    }
    if let Some(p) = &r.proto {
        bang(out, p.neg);
        out.push_str(" -p ");
        proto(out, p.value);
    }
    if let Some(f) = r.fragment {
        bang(out, !f);
        out.push_str(" -f");
    }
    // A string read from a quote left open at the end of its line ends
    // the printed line too (see `save_string`): the option that holds it
    // is written after the target, its module's `-m` staying in place, as
    // iptables-restore and the parser read a module's options anywhere
    // after its `-m`.
    let open = r.matches.iter().position(|m| open_option(m).is_some());
    for (i, m) in r.matches.iter().enumerate() {
        match (Some(i) == open, m) {
            (true, Match::Comment(_)) => out.push_str(" -m comment"),
            (true, Match::Helper(_)) => out.push_str(" -m helper"),
            _ => write_match(out, m),
        }
    }
    if let Some(t) = &r.target {
        write_target(out, t);
    }
    if let Some(m) = open.and_then(|i| r.matches.get(i)) {
        if let Some((neg, opt, s)) = open_option(m) {
            bang(out, neg);
            out.push_str(opt);
            save_string(out, s);
        }
    }
}

/// The option of `m` whose string ends with a newline (it was read from a
/// quote left open at the end of its line), for the modules whose string
/// option is their only one: `(negated, option, string)`.
fn open_option(m: &Match) -> Option<(bool, &'static str, &str)> {
    match m {
        Match::Comment(c) if c.ends_with('\n') => Some((false, " --comment", c)),
        Match::Helper(h) if h.value.ends_with('\n') => Some((h.neg, " --helper", &h.value)),
        _ => None,
    }
}

fn write_match(out: &mut String, m: &Match) {
    match m {
        Match::Comment(c) => {
            out.push_str(" -m comment --comment");
            save_string(out, c);
        }
        Match::Tcp(t) => {
            out.push_str(" -m tcp");
            opt_ports(out, "--sport", &t.sport);
            opt_ports(out, "--dport", &t.dport);
            if let Some(o) = &t.option {
                bang(out, o.neg);
                let _ = write!(out, " --tcp-option {}", o.value);
            }
            if let Some(f) = &t.flags {
                bang(out, f.neg);
                out.push_str(" --tcp-flags ");
                tcp_flags(out, f.value.mask);
                out.push(' ');
                tcp_flags(out, f.value.comp);
            }
        }
        Match::Udp(u) => {
            out.push_str(" -m udp");
            opt_ports(out, "--sport", &u.sport);
            opt_ports(out, "--dport", &u.dport);
        }
        Match::Sctp(s) => {
            out.push_str(" -m sctp");
            opt_ports(out, "--sport", &s.sport);
            opt_ports(out, "--dport", &s.dport);
            if let Some(c) = &s.chunk_types {
                bang(out, c.neg);
                let _ = write!(out, " --chunk-types {} {}", c.value.0, c.value.1.join(","));
            }
        }
        Match::Icmp(t) => {
            out.push_str(" -m icmp");
            if let Some(t) = t {
                bang(out, t.neg);
                out.push_str(" --icmp-type ");
                let v = &t.value;
                if v.ty == 255 {
                    out.push_str("any");
                } else if v.code == (0, 255) {
                    let _ = write!(out, "{}", v.ty);
                } else {
                    let _ = write!(out, "{}/{}", v.ty, v.code.0);
                }
            }
        }
        Match::Multiport { kind, neg, ports: list } => {
            out.push_str(" -m multiport");
            bang(out, *neg);
            out.push_str(match kind {
                MultiportKind::Source => " --sports ",
                MultiportKind::Destination => " --dports ",
                MultiportKind::Either => " --ports ",
            });
            for (i, p) in list.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                ports(out, p, ':');
            }
        }
        Match::Mark(n) | Match::Connmark(n) => {
            out.push_str(if matches!(m, Match::Mark(_)) { " -m mark" } else { " -m connmark" });
            bang(out, n.neg);
            out.push_str(" --mark ");
            mark(out, n.value.value, n.value.mask);
        }
        Match::Conntrack(c) => {
            out.push_str(" -m conntrack");
            if let Some(s) = &c.state {
                bang(out, s.neg);
                out.push_str(" --ctstate ");
                states(out, s.value);
            }
            if let Some(p) = &c.proto {
                bang(out, p.neg);
                let _ = write!(out, " --ctproto {}", p.value.0);
            }
            for (name, a) in [
                ("--ctorigsrc", &c.orig_src),
                ("--ctorigdst", &c.orig_dst),
                ("--ctreplsrc", &c.repl_src),
                ("--ctrepldst", &c.repl_dst),
            ] {
                if let Some(a) = a {
                    bang(out, a.neg);
                    out.push(' ');
                    out.push_str(name);
                    out.push(' ');
                    net_short(out, &a.value);
                }
            }
            opt_ports(out, "--ctorigsrcport", &c.orig_src_port);
            opt_ports(out, "--ctorigdstport", &c.orig_dst_port);
            opt_ports(out, "--ctreplsrcport", &c.repl_src_port);
            opt_ports(out, "--ctrepldstport", &c.repl_dst_port);
            if let Some(s) = &c.status {
                bang(out, s.neg);
                out.push_str(" --ctstatus ");
                let v = s.value;
                let list = [
                    ("EXPECTED", v.0 & CtStatus::EXPECTED != 0),
                    ("SEEN_REPLY", v.0 & CtStatus::SEEN_REPLY != 0),
                    ("ASSURED", v.0 & CtStatus::ASSURED != 0),
                    ("CONFIRMED", v.0 & CtStatus::CONFIRMED != 0),
                ];
                names(out, &list, "NONE");
            }
            if let Some(e) = &c.expire {
                bang(out, e.neg);
                if e.value.0 == e.value.1 {
                    let _ = write!(out, " --ctexpire {}", e.value.0);
                } else {
                    let _ = write!(out, " --ctexpire {}:{}", e.value.0, e.value.1);
                }
            }
            if let Some(d) = c.dir {
                out.push_str(match d {
                    crate::ruleset::CtDir::Original => " --ctdir ORIGINAL",
                    crate::ruleset::CtDir::Reply => " --ctdir REPLY",
                });
            }
        }
        Match::State(s) => {
            out.push_str(" -m state");
            bang(out, s.neg);
            out.push_str(" --state ");
            states(out, s.value);
        }
        Match::Statistic { neg, mode } => {
            out.push_str(" -m statistic");
            match mode {
                StatisticMode::Random { p31 } => {
                    out.push_str(" --mode random");
                    bang(out, *neg);
                    let _ = write!(out, " --probability {:.11}", f64::from(*p31) / 2_147_483_648.0);
                }
                StatisticMode::Nth { every, packet } => {
                    out.push_str(" --mode nth");
                    bang(out, *neg);
                    let _ = write!(out, " --every {every} --packet {packet}");
                }
            }
        }
        Match::Addrtype(a) => {
            out.push_str(" -m addrtype");
            if let Some(s) = &a.src_type {
                bang(out, s.neg);
                out.push_str(" --src-type ");
                addr_types(out, s.value);
            }
            if let Some(d) = &a.dst_type {
                bang(out, d.neg);
                out.push_str(" --dst-type ");
                addr_types(out, d.value);
            }
            if a.limit_iface_in {
                out.push_str(" --limit-iface-in");
            }
            if a.limit_iface_out {
                out.push_str(" --limit-iface-out");
            }
        }
        Match::Set(s) => {
            out.push_str(" -m set");
            bang(out, s.neg);
            out.push_str(" --match-set ");
            out.push_str(&s.name);
            out.push(' ');
            for (i, d) in s.dirs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(match d {
                    SetDir::Src => "src",
                    SetDir::Dst => "dst",
                });
            }
            if s.return_nomatch {
                out.push_str(" --return-nomatch");
            }
            if s.no_update_counters {
                out.push_str(" ! --update-counters");
            }
            if s.no_update_subcounters {
                out.push_str(" ! --update-subcounters");
            }
            for (k, neg, v) in &s.counter_conds {
                bang(out, *neg);
                let _ = write!(out, " --{k} {v}");
            }
        }
        Match::Recent(r) => {
            out.push_str(" -m recent");
            bang(out, r.neg);
            out.push_str(match r.cmd {
                RecentCmd::Set => " --set",
                RecentCmd::Rcheck => " --rcheck",
                RecentCmd::Update => " --update",
                RecentCmd::Remove => " --remove",
            });
            if let Some(s) = r.seconds {
                let _ = write!(out, " --seconds {s}");
            }
            if r.reap {
                out.push_str(" --reap");
            }
            if let Some(h) = r.hitcount {
                let _ = write!(out, " --hitcount {h}");
            }
            if r.rttl {
                out.push_str(" --rttl");
            }
            let _ = write!(out, " --name {} --mask {}", r.name, r.mask);
            out.push_str(if r.rsource { " --rsource" } else { " --rdest" });
        }
        Match::Rpfilter { loose, validmark, accept_local, invert } => {
            out.push_str(" -m rpfilter");
            for (on, s) in [
                (loose, " --loose"),
                (validmark, " --validmark"),
                (accept_local, " --accept-local"),
                (invert, " --invert"),
            ] {
                if *on {
                    out.push_str(s);
                }
            }
        }
        Match::Physdev(p) => {
            out.push_str(" -m physdev");
            let flag = |out: &mut String, v: Option<bool>, s: &str| {
                if let Some(v) = v {
                    bang(out, !v);
                    out.push_str(s);
                }
            };
            let dev = |out: &mut String, v: &Option<Neg<Iface>>, s: &str| {
                if let Some(v) = v {
                    bang(out, v.neg);
                    out.push_str(s);
                    iface(out, &v.value);
                }
            };
            flag(out, p.is_in, " --physdev-is-in");
            dev(out, &p.physdev_in, " --physdev-in ");
            flag(out, p.is_out, " --physdev-is-out");
            dev(out, &p.physdev_out, " --physdev-out ");
            flag(out, p.is_bridged, " --physdev-is-bridged");
        }
        Match::Iprange { src, dst } => {
            out.push_str(" -m iprange");
            if let Some(s) = src {
                bang(out, s.neg);
                out.push_str(" --src-range ");
                range(out, &s.value);
            }
            if let Some(d) = dst {
                bang(out, d.neg);
                out.push_str(" --dst-range ");
                range(out, &d.value);
            }
        }
        Match::Limit { rate, burst } => {
            let _ = write!(out, " -m limit --limit {}/{}", rate.count, unit_name(rate.per_secs));
            if *burst != 5 {
                let _ = write!(out, " --limit-burst {burst}");
            }
        }
        Match::Mac(m) => {
            out.push_str(" -m mac");
            bang(out, m.neg);
            let b = m.value;
            let _ = write!(
                out,
                " --mac-source {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                b[0], b[1], b[2], b[3], b[4], b[5]
            );
        }
        Match::Owner(o) => {
            out.push_str(" -m owner");
            if let Some(s) = o.socket_exists {
                bang(out, !s);
                out.push_str(" --socket-exists");
            }
            for (name, v) in [(" --uid-owner ", &o.uid), (" --gid-owner ", &o.gid)] {
                if let Some(v) = v {
                    bang(out, v.neg);
                    out.push_str(name);
                    match &v.value {
                        Ok((a, b)) if a == b => {
                            let _ = write!(out, "{a}");
                        }
                        Ok((a, b)) => {
                            let _ = write!(out, "{a}-{b}");
                        }
                        Err(n) => out.push_str(n),
                    }
                }
            }
            if o.suppl_groups {
                out.push_str(" --suppl-groups");
            }
        }
        Match::Pkttype(p) => {
            out.push_str(" -m pkttype");
            bang(out, p.neg);
            out.push_str(match p.value {
                PktType::Unicast => " --pkt-type unicast",
                PktType::Broadcast => " --pkt-type broadcast",
                PktType::Multicast => " --pkt-type multicast",
            });
        }
        Match::Policy(p) => {
            out.push_str(" -m policy --dir ");
            out.push_str(if p.dir_in { "in" } else { "out" });
            out.push_str(" --pol ");
            out.push_str(if p.ipsec { "ipsec" } else { "none" });
            if p.strict {
                out.push_str(" --strict");
            }
            for (k, neg, v) in &p.elements {
                bang(out, *neg);
                out.push(' ');
                out.push_str(k);
                if !v.is_empty() {
                    out.push(' ');
                    out.push_str(v);
                }
            }
        }
        Match::Socket { transparent, nowildcard, restore_skmark } => {
            out.push_str(" -m socket");
            for (on, s) in
                [(transparent, " --transparent"), (nowildcard, " --nowildcard"), (restore_skmark, " --restore-skmark")]
            {
                if *on {
                    out.push_str(s);
                }
            }
        }
        Match::Length(l) => {
            out.push_str(" -m length");
            bang(out, l.neg);
            let (a, b) = l.value;
            if a == b {
                let _ = write!(out, " --length {a}");
            } else {
                let _ = write!(out, " --length {a}:{b}");
            }
        }
        Match::Hashlimit(h) => {
            let _ = write!(
                out,
                " -m hashlimit --hashlimit-{} {}/{} --hashlimit-burst {}",
                if h.above { "above" } else { "upto" },
                h.rate.count,
                unit_name(h.rate.per_secs),
                h.burst
            );
            if !h.mode.is_empty() {
                let _ = write!(out, " --hashlimit-mode {}", h.mode.join(","));
            }
            let _ = write!(out, " --hashlimit-name {}", h.name);
            for (name, v) in [
                ("--hashlimit-htable-size", h.htable_size),
                ("--hashlimit-htable-max", h.htable_max),
                ("--hashlimit-htable-gcinterval", h.htable_gcinterval),
                ("--hashlimit-htable-expire", h.htable_expire),
            ] {
                if let Some(v) = v {
                    let _ = write!(out, " {name} {v}");
                }
            }
            for (name, v) in [("--hashlimit-srcmask", h.srcmask), ("--hashlimit-dstmask", h.dstmask)] {
                if let Some(v) = v {
                    let _ = write!(out, " {name} {v}");
                }
            }
            if h.rate_match {
                out.push_str(" --hashlimit-rate-match");
            }
            if let Some(i) = h.rate_interval {
                let _ = write!(out, " --hashlimit-rate-interval {i}");
            }
        }
        Match::Nfacct(n) => {
            // libxt_nfacct prints " --nfacct-name " and then the string with
            // its own leading space: two spaces, as real dumps show.
            out.push_str(" -m nfacct --nfacct-name ");
            save_string(out, n);
        }
        Match::Connlimit(c) => {
            let _ = write!(
                out,
                " -m connlimit --connlimit-{} {} --connlimit-mask {} --connlimit-{}",
                if c.above { "above" } else { "upto" },
                c.count,
                c.mask,
                if c.saddr { "saddr" } else { "daddr" }
            );
        }
        Match::Tos(t) => {
            out.push_str(" -m tos");
            bang(out, t.neg);
            let _ = write!(out, " --tos {:#04x}/{:#04x}", t.value.value, t.value.mask);
        }
        Match::Dscp(d) => {
            out.push_str(" -m dscp");
            bang(out, d.neg);
            let _ = write!(out, " --dscp {:#04x}", d.value);
        }
        Match::Ttl { op, value } => {
            out.push_str(" -m ttl");
            let o = match op.as_str() {
                "ne" => " ! --ttl-eq",
                "lt" => " --ttl-lt",
                "gt" => " --ttl-gt",
                _ => " --ttl-eq",
            };
            let _ = write!(out, "{o} {value}");
        }
        Match::Helper(h) => {
            out.push_str(" -m helper");
            bang(out, h.neg);
            out.push_str(" --helper");
            save_string(out, &h.value);
        }
        Match::Unsupported { module, args } => {
            out.push_str(" -m ");
            out.push_str(module);
            for a in args {
                raw_word(out, a);
            }
        }
    }
}

fn write_target(out: &mut String, t: &Target) {
    match t {
        Target::Accept => out.push_str(" -j ACCEPT"),
        Target::Drop => out.push_str(" -j DROP"),
        Target::Return => out.push_str(" -j RETURN"),
        Target::Reject(w) => {
            out.push_str(" -j REJECT --reject-with ");
            out.push_str(w.as_str());
        }
        Target::Dnat { to, random, persistent } => {
            out.push_str(" -j DNAT");
            for r in to {
                out.push_str(" --to-destination ");
                nat_range(out, r);
            }
            if *random {
                out.push_str(" --random");
            }
            if *persistent {
                out.push_str(" --persistent");
            }
        }
        Target::Snat { to, random, random_fully, persistent } => {
            out.push_str(" -j SNAT");
            for r in to {
                out.push_str(" --to-source ");
                nat_range(out, r);
            }
            if *random {
                out.push_str(" --random");
            }
            if *random_fully {
                out.push_str(" --random-fully");
            }
            if *persistent {
                out.push_str(" --persistent");
            }
        }
        Target::Masquerade { ports: p, random, random_fully } => {
            out.push_str(" -j MASQUERADE");
            if let Some(p) = p {
                out.push_str(" --to-ports ");
                ports(out, p, '-');
            }
            if *random {
                out.push_str(" --random");
            }
            if *random_fully {
                out.push_str(" --random-fully");
            }
        }
        Target::Redirect { ports: p, random } => {
            out.push_str(" -j REDIRECT");
            if let Some(p) = p {
                out.push_str(" --to-ports ");
                ports(out, p, '-');
            }
            if *random {
                out.push_str(" --random");
            }
        }
        Target::Mark { value, mask } => {
            out.push_str(" -j MARK --set-xmark ");
            hex(out, *value);
            out.push('/');
            hex(out, *mask);
        }
        Target::Connmark(op) => {
            out.push_str(" -j CONNMARK");
            match op {
                ConnmarkOp::SetXmark { value, mask } => {
                    out.push_str(" --set-xmark ");
                    hex(out, *value);
                    out.push('/');
                    hex(out, *mask);
                }
                ConnmarkOp::Save { nfmask, ctmask } => {
                    let _ = write!(out, " --save-mark --nfmask {nfmask:#x} --ctmask {ctmask:#x}");
                }
                ConnmarkOp::Restore { nfmask, ctmask } => {
                    let _ = write!(out, " --restore-mark --nfmask {nfmask:#x} --ctmask {ctmask:#x}");
                }
            }
        }
        Target::Ct(ct) => {
            out.push_str(" -j CT");
            if ct.notrack {
                out.push_str(" --notrack");
            }
            if let Some(h) = &ct.helper {
                let _ = write!(out, " --helper {h}");
            }
            for (k, v) in &ct.other {
                let _ = write!(out, " {k} {v}");
            }
            if let Some(z) = &ct.zone {
                let _ = write!(out, " --zone {z}");
            }
        }
        Target::Notrack => out.push_str(" -j NOTRACK"),
        Target::Log(l) => {
            out.push_str(" -j LOG");
            if let Some(p) = &l.prefix {
                out.push_str(" --log-prefix");
                save_string(out, p);
            }
            if let Some(level) = l.level {
                let _ = write!(out, " --log-level {level}");
            }
            for f in &l.flags {
                out.push_str(" --");
                out.push_str(f);
            }
        }
        Target::Nflog(n) => {
            out.push_str(" -j NFLOG");
            if let Some(p) = &n.prefix {
                out.push_str(" --nflog-prefix");
                save_string(out, p);
            }
            if let Some(g) = n.group {
                let _ = write!(out, " --nflog-group {g}");
            }
            if let Some(s) = n.size {
                let _ = write!(out, " --nflog-size {s}");
            }
            if let Some(t) = n.threshold {
                let _ = write!(out, " --nflog-threshold {t}");
            }
        }
        Target::Trace => out.push_str(" -j TRACE"),
        Target::Checksum => out.push_str(" -j CHECKSUM --checksum-fill"),
        Target::Tcpmss(m) => match m {
            Some(v) => {
                let _ = write!(out, " -j TCPMSS --set-mss {v}");
            }
            None => out.push_str(" -j TCPMSS --clamp-mss-to-pmtu"),
        },
        Target::Jump(c) => {
            out.push_str(" -j ");
            out.push_str(c);
        }
        Target::Goto(c) => {
            out.push_str(" -g ");
            out.push_str(c);
        }
        Target::Unsupported { name, args } => {
            out.push_str(" -j ");
            out.push_str(name);
            for a in args {
                raw_word(out, a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_string_quotes_like_libxtables() {
        let q = |s: &str| {
            let mut o = String::new();
            save_string(&mut o, s);
            o
        };
        assert_eq!(q("plain_x-1"), " plain_x-1");
        assert_eq!(q("a b"), " \"a b\"");
        assert_eq!(q(""), " \"\"");
        assert_eq!(q("ns2/svc2:p80"), " \"ns2/svc2:p80\"");
        assert_eq!(q("it's \"q\" \\"), r#" "it\'s \"q\" \\""#);
        // A string read from a quote left open ends with the newline.
        assert_eq!(q("abc -j \"x\n"), " \"abc -j \\\"x");
    }

    /// `{:.11}` prints the probability iptables prints with `%.11f`; each
    /// printed value reads back to the same p31.
    #[test]
    fn probability_prints_and_rounds_back() {
        let show = |p31: u32| format!("{:.11}", f64::from(p31) / 2_147_483_648.0);
        assert_eq!(show(1 << 30), "0.50000000000");
        assert_eq!(show(214_748_365), "0.10000000009");
        assert_eq!(show(524_288), "0.00024414062");
        assert_eq!(show(1 << 31), "1.00000000000");
        for p31 in (0u32..=(1 << 31)).step_by(9_973).chain([1, 2, 3, (1 << 31) - 1]) {
            let back = crate::parse::iptables::probability(&show(p31));
            assert_eq!(back, Some(p31), "p31 {p31} printed as {}", show(p31));
        }
    }
}
