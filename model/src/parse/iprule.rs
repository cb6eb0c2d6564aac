//! `ip rule show` into [`IpRule`]s (the routing policy database).
//!
//! Contract: never panics on any input; every problem is a [`ParseError`]
//! with file, line and column saying what was expected and what was found,
//! and every line is checked, so all errors of the file are reported. The
//! grammar is what iproute2's ip/iprule.c `print_rule()` writes: `PRIO:`,
//! then `not`, `from all|PREFIX`, `to PREFIX`, `tos`, `fwmark V[/M]`, `iif
//! DEV [detached]`, `oif DEV [detached]`, `uidrange A-B`, `ipproto P`,
//! `sport`/`dport` ranges, and the action: `lookup TABLE` (a name or a
//! number; `main` is 254, `local` 255, `default` 253, other names get the
//! stable ids of [`crate::netstate::table_id`]), `goto PRIO [unresolved]`,
//! `blackhole`, `unreachable`, `prohibit` or `nop`, with
//! `suppress_prefixlength N`. A rule whose `iif`/`oif` device is gone
//! (`[detached]`) keeps the name: no packet comes from or goes to it.
//! `proto`/`protocol` and `realms` are informational and dropped.
//! Selectors natpath cannot evaluate (`l3mdev`, `tun_id`,
//! `suppress_ifgroup`, the obsolete `map-to`/`nat`) are errors. IPv6 rules
//! are skipped; a line starting with `#` is a comment.

use super::iproute::lex::{self, Cursor, Word};
use crate::error::{ParseError, ParseErrors};
use crate::netstate::{table_id, IpRule, RuleAction};
use crate::ruleset::{PortRange, Proto};
use std::sync::Arc;

/// Parse `ip rule show` output.
///
/// Rejects, with the line and column: a line that does not start with
/// `PRIO:`, an unknown selector or action, a rule without an action, a value
/// of the wrong form, and a value missing at the end of the line.
pub fn parse(text: &str, file: &str) -> Result<Vec<IpRule>, ParseErrors> {
    let file: Arc<str> = Arc::from(file);
    let mut out = Vec::new();
    let mut errs = ParseErrors::default();
    for (n, line) in lex::lines(text) {
        let words = lex::words_before_comment(line);
        if words.is_empty() {
            continue;
        }
        let mut cur = Cursor::new(words, &file, n);
        match rule(&mut cur) {
            Ok(Some(r)) => out.push(r),
            Ok(None) => {}
            Err(e) => errs.push(e),
        }
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(errs)
    }
}

/// `ipproto` names (iproute2 uses /etc/protocols; these are the common ones).
pub(crate) fn proto(s: &str) -> Option<Proto> {
    Some(match s {
        "all" | "ip" => Proto::ALL,
        "icmp" => Proto::ICMP,
        "igmp" => Proto(2),
        "ipencap" | "ipip" | "ipv4" => Proto::IPIP,
        "tcp" => Proto::TCP,
        "udp" => Proto::UDP,
        "gre" => Proto(47),
        "esp" => Proto(50),
        "ah" => Proto(51),
        "ipv6-icmp" | "icmpv6" => Proto(58),
        "sctp" => Proto::SCTP,
        "udplite" => Proto(136),
        _ => Proto(lex::dec(s)?),
    })
}

/// `N` or `N-M`.
pub(crate) fn port_range(s: &str) -> Option<PortRange> {
    match s.split_once('-') {
        Some((a, b)) => {
            let (lo, hi) = (lex::dec(a)?, lex::dec(b)?);
            (lo <= hi).then_some(PortRange { lo, hi })
        }
        None => Some(PortRange::single(lex::dec(s)?)),
    }
}

/// A `from`/`to` value: `all` is `None`; IPv6 gives `Err(())` (skip the rule).
fn selector(cur: &mut Cursor<'_, '_>, key: Word<'_>) -> Result<Result<Option<ipnet::Ipv4Net>, ()>, ParseError> {
    let w = cur.value(key, "`all` or an IPv4 prefix")?;
    if w.text == "all" {
        return Ok(Ok(None));
    }
    if w.text.contains(':') {
        return Ok(Err(()));
    }
    lex::prefix(w.text).map(|p| Ok(Some(p))).ok_or_else(|| {
        cur.err(
            Some(w),
            format!("expected `all` or an IPv4 prefix after `{}`, found {}", key.text, lex::found(Some(w))),
        )
    })
}

fn rule(cur: &mut Cursor<'_, '_>) -> Result<Option<IpRule>, ParseError> {
    let Some(pw) = cur.next() else { return Ok(None) };
    let priority =
        pw.text.strip_suffix(':').and_then(lex::dec).ok_or_else(|| {
            cur.err(Some(pw), format!("expected a rule priority `N:`, found {}", lex::found(Some(pw))))
        })?;
    let mut r = IpRule {
        priority,
        not: false,
        from: None,
        to: None,
        fwmark: None,
        iif: None,
        oif: None,
        tos: None,
        ipproto: None,
        sport: None,
        dport: None,
        uidrange: None,
        suppress_prefixlength: None,
        action: RuleAction::Nop,
        loc: cur.loc(pw.col),
    };
    let mut action = None;
    while let Some(w) = cur.next() {
        match w.text {
            "not" => r.not = true,
            "from" => match selector(cur, w)? {
                Ok(p) => r.from = p,
                Err(()) => return Ok(None),
            },
            "to" => match selector(cur, w)? {
                Ok(p) => r.to = p,
                Err(()) => return Ok(None),
            },
            "tos" | "dsfield" => r.tos = Some(cur.typed(w, "a TOS value", |s| lex::num(s).and_then(|n| u8::try_from(n).ok()))?),
            "fwmark" => {
                r.fwmark = Some(cur.typed(w, "a mark `VALUE[/MASK]`", |s| match s.split_once('/') {
                    Some((v, m)) => Some((lex::num(v)?, lex::num(m)?)),
                    None => Some((lex::num(s)?, u32::MAX)),
                })?)
            }
            "iif" | "dev" => {
                r.iif = Some(cur.value(w, "a device name")?.text.to_string());
                if cur.peek().is_some_and(|p| p.text == "[detached]") {
                    cur.next();
                }
            }
            "oif" => {
                r.oif = Some(cur.value(w, "a device name")?.text.to_string());
                if cur.peek().is_some_and(|p| p.text == "[detached]") {
                    cur.next();
                }
            }
            "uidrange" => {
                r.uidrange = Some(cur.typed(w, "a uid range `A-B`", |s| {
                    let (a, b) = s.split_once('-')?;
                    Some((lex::dec(a)?, lex::dec(b)?))
                })?)
            }
            "ipproto" => r.ipproto = Some(cur.typed(w, "an IP protocol", proto)?),
            "sport" => r.sport = Some(cur.typed(w, "a port or port range", port_range)?),
            "dport" => r.dport = Some(cur.typed(w, "a port or port range", port_range)?),
            "lookup" | "table" => action = Some(RuleAction::Lookup(cur.typed(w, "a table name or number", table_id)?)),
            "goto" => {
                action = Some(RuleAction::Goto(cur.typed(w, "a rule priority", lex::dec)?));
                if cur.peek().is_some_and(|p| p.text == "[unresolved]") {
                    cur.next();
                }
            }
            "blackhole" => action = Some(RuleAction::Blackhole),
            "unreachable" => action = Some(RuleAction::Unreachable),
            "prohibit" => action = Some(RuleAction::Prohibit),
            "nop" => action = Some(RuleAction::Nop),
            "suppress_prefixlength" => r.suppress_prefixlength = Some(cur.typed(w, "a prefix length", lex::dec)?),
            "proto" | "protocol" | "realms" => {
                cur.value(w, "a value")?;
            }
            "l3mdev" | "tun_id" | "suppress_ifgroup" | "map-to" | "nat" | "flowlabel" => {
                return Err(cur.err(Some(w), format!("expected a selector natpath models, found `{}` (not supported)", w.text)))
            }
            _ => {
                return Err(cur.err(
                    Some(w),
                    format!(
                        "expected a rule selector (from, to, fwmark, iif, oif...) or action (lookup, goto, blackhole...), found {}",
                        lex::found(Some(w))
                    ),
                ))
            }
        }
    }
    match action {
        Some(a) => r.action = a,
        None => {
            return Err(cur.err(
                None,
                "expected an action (lookup, goto, blackhole, unreachable, prohibit or nop), found the end of the line",
            ))
        }
    }
    Ok(Some(r))
}
