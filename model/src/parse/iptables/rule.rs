//! One rule's words (after `-A CHAIN`) to [`Rule`]s: the generic options
//! `-s -d -i -o -p -f -m -j -g -c`, `!`, and handing each other option to
//! the module or target that has it.
//!
//! Contract: never panics; the first problem of the line is returned with
//! the byte offset of its word. Follows iptables 1.8.9 (iptables/xshared.c,
//! `do_parse`): an option belongs to the most recently loaded module or
//! target that has it; after `-p tcp` (udp, sctp, icmp) an option no loaded
//! module has loads that protocol's module (`-p tcp --dport 80` is
//! `-p tcp -m tcp --dport 80`); `-s`/`-d` lists (`-s a,b`) expand into one
//! rule per address pair, as iptables does; the old intrapositioned `-d !
//! x` is refused like iptables 1.8.9 refuses it. Normalised away as
//! iptables-save does: `-s 0.0.0.0/0`, `-p all`, `-i +`.

use super::args::{bad, bad_because, show, Cursor, LineError, Res};
use super::lex::Word;
use super::matches::{self, Head};
use super::targets::{self, Kind};
use super::value;
use crate::loc::Loc;
use crate::ruleset::{Counters, Iface, Neg, Proto, Rule, Target};
use ipnet::Ipv4Net;

/// Built-in targets a chain may not be named after.
const RESERVED: [&str; 4] = ["ACCEPT", "DROP", "RETURN", "QUEUE"];

/// Chain names iptables accepts: 1 to 28 characters, not starting with `-`
/// or `!`, not a built-in target's name; and (so that a dump can print
/// them back) without spaces, quotes or control characters.
pub(crate) fn check_chain_name(w: &Word<'_>) -> Result<(), LineError> {
    let s = w.as_str();
    // Every rule names its chain (and most a chain to jump to): look at
    // bytes when the name is ASCII, as it nearly always is.
    if s.len() > 28 && s.chars().count() > 28 {
        return Err(LineError::new(
            w.start,
            format!(
                "expected a chain name of at most 28 characters, found `{}` ({} characters)",
                show(s),
                s.chars().count()
            ),
        ));
    }
    if s.is_empty()
        || s.starts_with('-')
        || s.starts_with('!')
        || if s.is_ascii() {
            // ASCII whitespace and control characters are the bytes up to
            // the space, and DEL.
            s.bytes().any(|b| b <= b' ' || b == b'"' || b == 0x7f)
        } else {
            s.chars().any(|c| c.is_whitespace() || c == '"' || c.is_control())
        }
    {
        return Err(LineError::new(w.start, format!("expected a chain name, found `{}`", show(s))));
    }
    if RESERVED.contains(&s) {
        return Err(LineError::new(w.start, format!("expected a chain name, found `{s}`, a built-in target")));
    }
    Ok(())
}

/// The addresses of `-s`/`-d`: almost always one.
enum Addrs {
    One(Ipv4Net),
    Many(Vec<Ipv4Net>),
}

impl Addrs {
    fn len(&self) -> usize {
        match self {
            Addrs::One(_) => 1,
            Addrs::Many(v) => v.len(),
        }
    }

    fn get(&self, i: usize) -> Option<Ipv4Net> {
        match self {
            Addrs::One(n) => (i == 0).then_some(*n),
            Addrs::Many(v) => v.get(i).copied(),
        }
    }
}

fn one_addr(w: &Word<'_>, opt: &str, part: &str) -> Res<Ipv4Net> {
    match value::ipv4_net(part) {
        Ok(n) => Ok(n),
        Err(value::AddrError::Ipv6) => Err(LineError::ipv6(w.start, &format!("`{}` is an IPv6 address", show(part)))),
        Err(value::AddrError::Bad(why)) if why.is_empty() => Err(bad(w, opt, "an IPv4 address")),
        Err(value::AddrError::Bad(why)) => Err(bad_because(w, opt, "an IPv4 address", &why)),
    }
}

fn addr_list(w: &Word<'_>, opt: &str) -> Res<Addrs> {
    let s = w.as_str();
    if !s.bytes().any(|b| b == b',') {
        return one_addr(w, opt, s).map(Addrs::One);
    }
    let mut out = Vec::new();
    for part in s.split(',') {
        out.push(one_addr(w, opt, part)?);
    }
    Ok(Addrs::Many(out))
}

/// The address of a rule after normalisation: `0.0.0.0/0` is no match.
fn header_addr(neg: bool, n: Ipv4Net) -> Option<Neg<Ipv4Net>> {
    if !neg && n.prefix_len() == 0 {
        None
    } else {
        Some(Neg { neg, value: n })
    }
}

/// Parse the words of a rule (everything after the chain name) into
/// `out`: one rule, or one per address pair of `-s a,b -d c`. Returns the
/// byte offset of the chain name after `-j`/`-g`, when there is one.
///
/// `mods` is scratch space the caller keeps between rules (empty on
/// entry and on return). `out` is cleared first; the rules are written
/// straight into it (a rule is 248 bytes, and every move of it by value
/// through the layers of the parser is a copy).
pub(crate) fn parse(
    words: &[Word<'_>],
    line_end: usize,
    loc: &Loc,
    lenient: bool,
    mods: &mut Vec<(matches::Builder, usize)>,
    out: &mut Vec<Rule>,
) -> Res<Option<usize>> {
    mods.clear();
    out.clear();
    let r = parse_into(words, line_end, loc, lenient, mods, out);
    mods.clear();
    r
}

fn parse_into(
    words: &[Word<'_>],
    line_end: usize,
    loc: &Loc,
    lenient: bool,
    mods: &mut Vec<(matches::Builder, usize)>,
    out: &mut Vec<Rule>,
) -> Res<Option<usize>> {
    let mut cur = Cursor::new(words, line_end);
    let mut src: Option<(bool, Addrs)> = None;
    let mut dst: Option<(bool, Addrs)> = None;
    let mut in_iface: Option<Neg<Iface>> = None;
    let mut out_iface: Option<Neg<Iface>> = None;
    let mut proto: Option<Neg<Proto>> = None;
    let mut fragment: Option<bool> = None;
    let mut counters: Option<Counters> = None;
    let mut target: Option<(targets::Builder, usize)> = None;
    let mut target_at: Option<usize> = None;
    // How many modules were loaded before `-j`: options after it may
    // belong to the target.
    let mut target_pos: Option<usize> = None;
    let mut neg_at: Option<usize> = None;

    while let Some(w) = cur.bump() {
        let s = w.as_str();
        if s == "!" && !w.quoted {
            if neg_at.is_some() {
                return Err(LineError::new(w.start, "multiple consecutive `!` are not allowed"));
            }
            neg_at = Some(w.start);
            continue;
        }
        let neg = neg_at.take().is_some();
        let once = |taken: bool, name: &str| -> Res<()> {
            if taken {
                Err(LineError::new(w.start, format!("`{name}` can only be given once")))
            } else {
                Ok(())
            }
        };
        let no_neg = || -> Res<()> {
            if neg {
                Err(LineError::new(w.start, format!("`!` cannot be used before `{s}`")))
            } else {
                Ok(())
            }
        };
        match s {
            "-s" | "--source" | "--src" => {
                once(src.is_some(), "-s")?;
                let v = cur.value(s, "an IPv4 address")?;
                src = Some((neg, addr_list(v, s)?));
            }
            "-d" | "--destination" | "--dst" => {
                once(dst.is_some(), "-d")?;
                let v = cur.value(s, "an IPv4 address")?;
                dst = Some((neg, addr_list(v, s)?));
            }
            "-i" | "--in-interface" | "-o" | "--out-interface" => {
                let input = s == "-i" || s == "--in-interface";
                let slot = if input { &mut in_iface } else { &mut out_iface };
                once(slot.is_some(), if input { "-i" } else { "-o" })?;
                let v = cur.value(s, "an interface name")?;
                let i = value::iface(v.as_str()).map_err(|why| bad_because(v, s, "an interface name", &why))?;
                *slot = Some(Neg { neg, value: i });
            }
            "-p" | "--protocol" => {
                once(proto.is_some(), "-p")?;
                let v = cur.value(s, "a protocol")?;
                let pv = v.as_str();
                if pv.eq_ignore_ascii_case("icmpv6") || pv.eq_ignore_ascii_case("ipv6-icmp") || pv == "58" {
                    return Err(LineError::ipv6(v.start, &format!("`-p {}` is ICMPv6", show(v.as_str()))));
                }
                let p = value::proto(v.as_str()).ok_or_else(|| bad(v, s, "a protocol name or number"))?;
                if neg && p == Proto::ALL {
                    return Err(LineError::new(w.start, "`! -p all` would never match"));
                }
                proto = Some(Neg { neg, value: p });
            }
            "-f" | "--fragment" => {
                once(fragment.is_some(), "-f")?;
                fragment = Some(!neg);
            }
            "-c" | "--set-counters" => {
                no_neg()?;
                once(counters.is_some(), "-c")?;
                let p = cur.value(s, "a packet count")?;
                let packets = value::dec(p.as_str()).ok_or_else(|| bad(p, s, "a packet count"))?;
                let b = cur.value(s, "a byte count")?;
                let bytes = value::dec(b.as_str()).ok_or_else(|| bad(b, s, "a byte count"))?;
                counters = Some(Counters { packets, bytes });
            }
            "-4" | "--ipv4" => no_neg()?,
            "-6" | "--ipv6" => return Err(LineError::ipv6(w.start, "the rule says `-6`")),
            "-m" | "--match" => {
                no_neg()?;
                let v = cur.value(s, "a match module name")?;
                let name_ok = !v.as_str().is_empty()
                    && v.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !name_ok {
                    return Err(bad(v, s, "a match module name"));
                }
                let b = match matches::Builder::new(v.as_str()) {
                    Some(b) => b,
                    // A module iptables has and natpath does not model: the
                    // rule is kept, and what depends on it is unknown.
                    None if lenient || matches::UNMODELLED.contains(&v.as_str()) => {
                        matches::Builder::unsupported(v.as_str())
                    }
                    None if matches!(
                        v.as_str(),
                        "icmp6" | "ipv6header" | "frag" | "hbh" | "rt" | "dst" | "mh" | "eui64"
                    ) =>
                    {
                        return Err(LineError::ipv6(
                            v.start,
                            &format!("`-m {}` is an ip6tables module", show(v.as_str())),
                        ));
                    }
                    None => {
                        return Err(LineError::new(v.start, format!("unknown match module `{}`", show(v.as_str()))));
                    }
                };
                mods.push((b, v.start));
            }
            "-j" | "--jump" | "-g" | "--goto" => {
                no_neg()?;
                let goto = s == "-g" || s == "--goto";
                if target.is_some() {
                    return Err(LineError::new(w.start, "a rule takes only one `-j` or `-g`"));
                }
                let v = cur.value(s, if goto { "a chain name" } else { "a target or chain name" })?;
                let name = v.as_str();
                if name.is_empty() {
                    return Err(bad(v, s, "a target or chain name"));
                }
                let b = match targets::kind(name) {
                    Kind::Known(_) if goto => {
                        return Err(bad_because(v, s, "a chain name", "`-g` goes to user chains, not to targets"));
                    }
                    Kind::Known(b) => b,
                    // A target iptables has and natpath does not model:
                    // kept, and what depends on it is unknown.
                    Kind::Unmodelled => targets::Builder::unsupported(name),
                    Kind::Chain => {
                        check_chain_name(v)?;
                        target_at = Some(v.start);
                        targets::Builder::chain(name, goto)
                    }
                };
                target = Some((b, v.start));
                target_pos = Some(mods.len());
            }
            _ if s.starts_with('-') && s.len() > 1 && !w.quoted => {
                // Find the most recently loaded module or target that has it:
                // walk back from the last module, passing the target at the
                // point where `-j` was written.
                let mut taken = false;
                let mut i = mods.len();
                loop {
                    if target_pos == Some(i) {
                        if let Some((b, _)) = target.as_mut() {
                            if b.option(w, neg, &mut cur)? {
                                taken = true;
                                break;
                            }
                        }
                    }
                    if i == 0 {
                        break;
                    }
                    i -= 1;
                    if let Some((b, _)) = mods.get_mut(i) {
                        if b.option(w, neg, &mut cur)? {
                            taken = true;
                            break;
                        }
                    }
                }
                if taken {
                    continue;
                }
                // `-p tcp --dport 80`: iptables loads the protocol's module.
                if let Some(mut b) = proto.filter(|p| !p.neg).and_then(|p| matches::Builder::for_proto(p.value)) {
                    if b.option(w, neg, &mut cur)? {
                        mods.push((b, w.start));
                        continue;
                    }
                }
                // The words belong to the last unmodelled module or target
                // (any unknown one, lenient), unless a protocol module would
                // take them once `-p` is read (the printer writes `-p` first).
                const PROTO_OPTIONS: [&str; 9] = [
                    "--sport",
                    "--source-port",
                    "--dport",
                    "--destination-port",
                    "--tcp-flags",
                    "--syn",
                    "--tcp-option",
                    "--chunk-types",
                    "--icmp-type",
                ];
                if !PROTO_OPTIONS.contains(&s) {
                    let target_last = target_pos == Some(mods.len());
                    let sink_is_unsupported = if target_last {
                        target.as_ref().is_some_and(|(b, _)| b.is_unsupported())
                    } else {
                        mods.last().is_some_and(|(b, _)| b.is_unsupported())
                    };
                    if sink_is_unsupported {
                        let mut push = |x: &str| {
                            if target_last {
                                if let Some((b, _)) = target.as_mut() {
                                    b.push_arg(x);
                                }
                            } else if let Some((b, _)) = mods.last_mut() {
                                b.push_arg(x);
                            }
                        };
                        if neg {
                            push("!");
                        }
                        push(s);
                        // Values run to the next option; a value that looks
                        // like an option or `!` (even quoted) ends them, so
                        // that the printed words read back the same.
                        while let Some(n) = cur.peek() {
                            if n.as_str().starts_with('-') || n.as_str() == "!" {
                                break;
                            }
                            push(n.as_str());
                            cur.bump();
                        }
                        continue;
                    }
                }
                return Err(LineError::new(w.start, format!("unknown option `{}`", show(s))));
            }
            _ => {
                return Err(LineError::new(
                    w.start,
                    format!("expected an option such as `-p` or `-j`, found `{}`", show(s)),
                ));
            }
        }
    }
    if let Some(at) = neg_at {
        return Err(LineError::new(at, "expected an option after `!`, found end of line"));
    }

    // Normalise as iptables-save prints: no `-p all`, `-i +`, `-s 0/0`.
    if proto.is_some_and(|p| !p.neg && p.value == Proto::ALL) {
        proto = None;
    }
    for i in [&mut in_iface, &mut out_iface] {
        if i.as_ref().is_some_and(|n| !n.neg && n.value.wildcard && n.value.name.is_empty()) {
            *i = None;
        }
    }
    let head = Head { proto };
    let mut ms = Vec::with_capacity(mods.len());
    for (b, at) in mods.drain(..) {
        ms.push(b.finish(&head, at)?);
    }
    let target: Option<Target> = match target {
        Some((b, at)) => Some(b.finish(&head, at)?),
        None => None,
    };
    let mut base = Rule {
        src: None,
        dst: None,
        in_iface,
        out_iface,
        proto: head.proto,
        fragment,
        matches: ms,
        target,
        counters: counters.map(Box::new),
        loc: loc.clone(),
    };
    let ns = src.as_ref().map_or(1, |(_, a)| a.len());
    let nd = dst.as_ref().map_or(1, |(_, a)| a.len());
    let pick = |a: &Option<(bool, Addrs)>, i: usize| {
        a.as_ref().and_then(|(neg, l)| l.get(i).and_then(|n| header_addr(*neg, n)))
    };
    if ns * nd == 1 {
        base.src = pick(&src, 0);
        base.dst = pick(&dst, 0);
        out.push(base);
        return Ok(target_at);
    }
    out.reserve(ns * nd);
    for i in 0..ns {
        for j in 0..nd {
            let mut r = base.clone();
            r.src = pick(&src, i);
            r.dst = pick(&dst, j);
            out.push(r);
        }
    }
    Ok(target_at)
}
