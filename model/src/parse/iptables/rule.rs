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

/// A parsed rule line.
pub(crate) struct Parsed {
    /// The rules (more than one when `-s`/`-d` listed several addresses).
    pub rules: Vec<Rule>,
    /// Byte offset of the chain name after `-j`/`-g`, when there is one.
    pub target_at: Option<usize>,
}

enum Slot {
    Match(usize),
    Target,
}

fn addr_list(w: &Word<'_>, opt: &str) -> Res<Vec<Ipv4Net>> {
    let mut out = Vec::new();
    for part in w.as_str().split(',') {
        match value::ipv4_net(part) {
            Ok(n) => out.push(n),
            Err(value::AddrError::Ipv6) => {
                return Err(LineError::ipv6(w.start, &format!("`{}` is an IPv6 address", show(part))));
            }
            Err(value::AddrError::Bad(why)) if why.is_empty() => return Err(bad(w, opt, "an IPv4 address")),
            Err(value::AddrError::Bad(why)) => return Err(bad_because(w, opt, "an IPv4 address", &why)),
        }
    }
    Ok(out)
}

/// Parse the words of a rule (everything after the chain name).
pub(crate) fn parse(words: &[Word<'_>], line_end: usize, loc: &Loc, lenient: bool) -> Res<Parsed> {
    let mut cur = Cursor::new(words, line_end);
    let mut src: Option<(bool, Vec<Ipv4Net>)> = None;
    let mut dst: Option<(bool, Vec<Ipv4Net>)> = None;
    let mut in_iface: Option<Neg<Iface>> = None;
    let mut out_iface: Option<Neg<Iface>> = None;
    let mut proto: Option<Neg<Proto>> = None;
    let mut fragment: Option<bool> = None;
    let mut counters: Option<Counters> = None;
    let mut mods: Vec<(matches::Builder, usize)> = Vec::new();
    let mut target: Option<(targets::Builder, usize)> = None;
    let mut target_at: Option<usize> = None;
    let mut order: Vec<Slot> = Vec::new();
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
                let low = v.as_str().to_ascii_lowercase();
                if matches!(low.as_str(), "icmpv6" | "ipv6-icmp" | "58") {
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
                let b = match matches::Builder::new(v.as_str()) {
                    Some(b) => b,
                    None if lenient => matches::Builder::unsupported(v.as_str()),
                    None if matches!(v.as_str(), "icmp6" | "ipv6header" | "frag" | "hbh" | "rt" | "dst" | "mh" | "eui64") => {
                        return Err(LineError::ipv6(v.start, &format!("`-m {}` is an ip6tables module", show(v.as_str()))));
                    }
                    None => {
                        return Err(LineError::new(v.start, format!("unknown match module `{}`", show(v.as_str()))));
                    }
                };
                order.push(Slot::Match(mods.len()));
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
                    Kind::Unmodelled if lenient => targets::Builder::unsupported(name),
                    Kind::Unmodelled => {
                        return Err(LineError::new(v.start, format!("target `{}` is not supported by natpath", show(name))));
                    }
                    Kind::Chain => {
                        target_at = Some(v.start);
                        targets::Builder::chain(name, goto)
                    }
                };
                target = Some((b, v.start));
                order.push(Slot::Target);
            }
            _ if s.starts_with('-') && s.len() > 1 && !w.quoted => {
                // Find the most recently loaded module or target that has it.
                let mut taken = false;
                for slot in order.iter().rev() {
                    let claimed = match slot {
                        Slot::Match(i) => match mods.get_mut(*i) {
                            Some((b, _)) => b.option(w, neg, &mut cur)?,
                            None => false,
                        },
                        Slot::Target => match target.as_mut() {
                            Some((b, _)) => b.option(w, neg, &mut cur)?,
                            None => false,
                        },
                    };
                    if claimed {
                        taken = true;
                        break;
                    }
                }
                if taken {
                    continue;
                }
                // `-p tcp --dport 80`: iptables loads the protocol's module.
                if let Some(mut b) = proto.filter(|p| !p.neg).and_then(|p| matches::Builder::for_proto(p.value)) {
                    if b.option(w, neg, &mut cur)? {
                        order.push(Slot::Match(mods.len()));
                        mods.push((b, w.start));
                        continue;
                    }
                }
                // Lenient: the words belong to the last unknown module or target.
                if lenient {
                    let last = order.last();
                    let sink_is_unsupported = match last {
                        Some(Slot::Match(i)) => mods.get(*i).is_some_and(|(b, _)| b.is_unsupported()),
                        Some(Slot::Target) => target.as_ref().is_some_and(|(b, _)| b.is_unsupported()),
                        None => false,
                    };
                    if sink_is_unsupported {
                        let mut push = |x: &str| match last {
                            Some(Slot::Match(i)) => {
                                if let Some((b, _)) = mods.get_mut(*i) {
                                    b.push_arg(x);
                                }
                            }
                            _ => {
                                if let Some((b, _)) = target.as_mut() {
                                    b.push_arg(x);
                                }
                            }
                        };
                        if neg {
                            push("!");
                        }
                        push(s);
                        while let Some(n) = cur.peek() {
                            if (n.as_str().starts_with('-') && n.as_str().len() > 1 && !n.quoted)
                                || (n.as_str() == "!" && !n.quoted)
                            {
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
    for (b, at) in mods {
        ms.push(b.finish(&head, at)?);
    }
    let target: Option<Target> = match target {
        Some((b, at)) => Some(b.finish(&head, at)?),
        None => None,
    };
    let expand = |a: Option<(bool, Vec<Ipv4Net>)>| -> Vec<Option<Neg<Ipv4Net>>> {
        match a {
            None => vec![None],
            Some((neg, list)) => list
                .into_iter()
                .map(|n| if !neg && n.prefix_len() == 0 { None } else { Some(Neg { neg, value: n }) })
                .collect(),
        }
    };
    let srcs = expand(src);
    let dsts = expand(dst);
    let mut rules = Vec::with_capacity(srcs.len() * dsts.len());
    let base = Rule {
        src: None,
        dst: None,
        in_iface,
        out_iface,
        proto: head.proto,
        fragment,
        matches: ms,
        target,
        counters,
        loc: loc.clone(),
    };
    let n = srcs.len() * dsts.len();
    if n == 1 {
        let mut r = base;
        r.src = srcs.into_iter().next().flatten();
        r.dst = dsts.into_iter().next().flatten();
        rules.push(r);
    } else {
        for s in &srcs {
            for d in &dsts {
                let mut r = base.clone();
                r.src = *s;
                r.dst = *d;
                rules.push(r);
            }
        }
    }
    Ok(Parsed { rules, target_at })
}
