//! `ipset save` (`create`/`add` lines) and `ipset list` (the `Name: /
//! Type: / Header: / Members:` blocks people paste) into [`IpSet`]s.
//!
//! Contract: never panics on any input; every problem is a [`ParseError`]
//! with file, line and column saying what was expected and what was found,
//! and every line is checked, so all errors of the file are reported. The
//! element syntax is ipset(8)'s for each type: `ADDR[/LEN]` for hash:ip,
//! hash:net and bitmap:ip, `,[PROTO:]PORT` for the port dimension (proto
//! `tcp` when omitted; `icmp:TYPE/CODE` or an ICMP name, kept as the port
//! `TYPE << 8 | CODE` as the kernel does; `PROTO:0` for protocols without
//! ports), `,IFACE` (or `,physdev:IFACE`) for hash:net,iface, a plain port or
//! range for bitmap:port (any protocol), a set name for list:set. Set names
//! are any run of non-blank characters, shell metacharacters included (Weave's
//! `weave-;rGqyMIl1HN^cfDki~Z$3]6!N`); a comment is a double-quoted word that
//! may hold blanks. Create options (`family`, `hashsize`, `maxelem`,
//! `bucketsize`, `initval`, `timeout`, `counters`, `comment`, `skbinfo`,
//! `forceadd`, `netmask`, `markmask`, `bitmask`, `range`, `size`) and entry
//! options (`timeout`, `packets`, `bytes`, `comment`, `skbmark`, `skbprio`,
//! `skbqueue`, and `nomatch`) are kept as written. The entries of an `inet6`
//! set are not read (natpath models IPv4). Types natpath does not model
//! (`hash:mac`, `hash:net,net`, `hash:ip,mark`...) are errors. An `ipset
//! list` block whose member count differs from its `Number of entries` is an
//! error: the paste was cut.

use super::iproute::lex::{self, Word};
use super::iprule::{port_range, proto};
use crate::error::{ParseError, ParseErrors};
use crate::loc::Loc;
use crate::netstate::{IpSet, SetEntry, SetType};
use crate::ruleset::{PortRange, Proto};
use std::sync::Arc;

const TYPES: &str = "hash:ip, hash:net, hash:ip,port, hash:net,port, hash:ip,port,ip, hash:ip,port,net, hash:net,iface, bitmap:ip, bitmap:port or list:set";

fn set_type(s: &str) -> Option<SetType> {
    Some(match s {
        "hash:ip" => SetType::HashIp,
        "hash:net" => SetType::HashNet,
        "hash:ip,port" => SetType::HashIpPort,
        "hash:net,port" => SetType::HashNetPort,
        "hash:ip,port,ip" => SetType::HashIpPortIp,
        "hash:ip,port,net" => SetType::HashIpPortNet,
        "hash:net,iface" => SetType::HashNetIface,
        "bitmap:port" => SetType::BitmapPort,
        "bitmap:ip" => SetType::BitmapIp,
        "list:set" => SetType::ListSet,
        _ => return None,
    })
}

const CREATE_FLAGS: &[&str] = &["counters", "comment", "skbinfo", "forceadd"];
const CREATE_VALUED: &[&str] = &[
    "family",
    "hashsize",
    "maxelem",
    "bucketsize",
    "initval",
    "timeout",
    "netmask",
    "markmask",
    "bitmask",
    "range",
    "size",
];
const ENTRY_VALUED: &[&str] = &["timeout", "packets", "bytes", "comment", "skbmark", "skbprio", "skbqueue"];

/// Words of an ipset line: blanks separate words, except inside a
/// double-quoted word (a comment). `Err` is the column of an unclosed quote.
fn words(line: &str, first_col: u32) -> Result<Vec<Word<'_>>, u32> {
    let mut out = Vec::new();
    let mut start: Option<(usize, u32)> = None;
    let mut quoted = false;
    let mut col = first_col;
    for (i, c) in line.char_indices() {
        if quoted {
            if c == '"' {
                quoted = false;
            }
        } else if c.is_whitespace() {
            if let Some((s, sc)) = start.take() {
                if let Some(text) = line.get(s..i) {
                    out.push(Word { text, col: sc });
                }
            }
        } else {
            if start.is_none() {
                start = Some((i, col));
            }
            if c == '"' {
                quoted = true;
            }
        }
        col = col.saturating_add(1);
    }
    if quoted {
        return Err(start.map_or(first_col, |(_, c)| c));
    }
    if let Some((s, sc)) = start {
        if let Some(text) = line.get(s..) {
            out.push(Word { text, col: sc });
        }
    }
    Ok(out)
}

/// A value as written, without the quotes of a quoted comment.
fn unquote(s: &str) -> &str {
    s.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(s)
}

/// Errors of one line, built against its file and number.
struct At<'f> {
    file: &'f Arc<str>,
    line: u32,
    end: u32,
}

impl At<'_> {
    fn err(&self, w: Option<Word<'_>>, msg: impl Into<String>) -> ParseError {
        ParseError::new(Loc::new(self.file, self.line, w.map_or(self.end, |w| w.col)), msg)
    }
}

/// One set being built, with what `ipset list` declared about it.
struct Building {
    set: IpSet,
    /// `Number of entries: N` and its line, from `ipset list`.
    declared: Option<(usize, u32)>,
    /// False once the set's header failed: its entries are not checked.
    ok: bool,
}

/// Parse `ipset save` or `ipset list` output (the two may be mixed).
///
/// Rejects, with the line and column: an unknown command, type or option,
/// an `add` to a set no `create` defines, a set created twice, an element
/// that does not fit the set's type, an unclosed quote, an `ipset list`
/// block without `Type:` or cut short, and a value missing at the end of the
/// line.
pub fn parse(text: &str, file: &str) -> Result<Vec<IpSet>, ParseErrors> {
    let file: Arc<str> = Arc::from(file);
    let mut sets: Vec<Building> = Vec::new();
    let mut errs = ParseErrors::default();
    // `ipset list`: the block being read and whether `Members:` was seen.
    let mut list: Option<(usize, bool)> = None;
    for (n, line) in lex::lines(text) {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = u32::try_from(line.chars().take_while(|c| c.is_whitespace()).count()).unwrap_or(0);
        let col0 = indent.saturating_add(1);
        if let Some(name) = trimmed.strip_prefix("Name:") {
            if let Some(e) = finish_list(&mut sets, list, &file) {
                errs.push(e);
            }
            let name = name.trim();
            let loc = Loc::new(&file, n, col0);
            if name.is_empty() {
                errs.push(ParseError::new(loc, "expected a set name after `Name:`, found the end of the line"));
                list = None;
                continue;
            }
            if let Some(e) = duplicate(&sets, name, &loc) {
                errs.push(e);
            }
            sets.push(Building {
                set: IpSet {
                    name: name.to_string(),
                    kind: SetType::HashIp,
                    inet: true,
                    options: Vec::new(),
                    entries: Vec::new(),
                    loc,
                },
                declared: None,
                ok: false,
            });
            list = Some((sets.len().saturating_sub(1), false));
            continue;
        }
        if let Some((i, members)) = list {
            if let Some(e) = list_line(&mut sets, i, members, line, n, &file).err() {
                errs.push(e);
            }
            if !members && trimmed == "Members:" {
                list = Some((i, true));
            }
            continue;
        }
        let ws = match words(line, 1) {
            Ok(w) => w,
            Err(col) => {
                errs.push(ParseError::new(
                    Loc::new(&file, n, col),
                    "expected a closing `\"`, found the end of the line",
                ));
                continue;
            }
        };
        let at = At { file: &file, line: n, end: ws.last().map_or(1, Word::end) };
        if let Err(e) = save_line(&mut sets, &ws, &at) {
            errs.push(e);
        }
    }
    if let Some(e) = finish_list(&mut sets, list, &file) {
        errs.push(e);
    }
    if errs.is_empty() {
        Ok(sets.into_iter().map(|b| mask_members(b.set)).collect())
    } else {
        Err(errs)
    }
}

fn duplicate(sets: &[Building], name: &str, _loc: &Loc) -> Option<ParseError> {
    let first = sets.iter().find(|b| b.set.name == name)?;
    Some(ParseError::new(
        _loc.clone(),
        format!("set `{}` is defined twice (first at line {})", lex::show(name), first.set.loc.line),
    ))
}

/// The end of an `ipset list` block: it needs a type, and as many members
/// as it declared.
fn finish_list(sets: &mut [Building], list: Option<(usize, bool)>, file: &Arc<str>) -> Option<ParseError> {
    let (i, members) = list?;
    let b = sets.get_mut(i)?;
    let name = lex::show(&b.set.name);
    if !b.ok && b.set.options.is_empty() && b.set.entries.is_empty() && !members {
        return Some(ParseError::new(
            b.set.loc.clone(),
            format!("expected `Type:` and `Members:` in the block of set `{name}`, found neither"),
        ));
    }
    if !members {
        return Some(ParseError::new(
            b.set.loc.clone(),
            format!("expected `Members:` in the block of set `{name}`, found the end of the block"),
        ));
    }
    if let Some((declared, line)) = b.declared {
        if b.ok && b.set.inet && declared != b.set.entries.len() {
            return Some(ParseError::new(
                Loc::new(file, line, 1),
                format!("set `{name}` declares {declared} entries, found {}: the paste looks cut", b.set.entries.len()),
            ));
        }
    }
    None
}

/// One line inside an `ipset list` block.
fn list_line(
    sets: &mut [Building],
    i: usize,
    members: bool,
    line: &str,
    n: u32,
    file: &Arc<str>,
) -> Result<(), ParseError> {
    let Some(b) = sets.get_mut(i) else { return Ok(()) };
    let ws = words(line, 1)
        .map_err(|col| ParseError::new(Loc::new(file, n, col), "expected a closing `\"`, found the end of the line"))?;
    let at = At { file, line: n, end: ws.last().map_or(1, Word::end) };
    let Some(first) = ws.first().copied() else { return Ok(()) };
    if members {
        if !b.ok || !b.set.inet {
            return Ok(());
        }
        let e = entry(b.set.kind, &ws, &at)?;
        b.set.entries.push(e);
        return Ok(());
    }
    let trimmed = line.trim();
    let (key, value) = trimmed.split_once(':').unwrap_or((trimmed, ""));
    let value = value.trim();
    match key {
        "Type" => {
            let w = ws.get(1).copied();
            b.set.kind = set_type(value).ok_or_else(|| unknown_type(&at, w, value))?;
            b.ok = true;
        }
        "Header" => {
            let rest = ws.get(1..).unwrap_or(&[]);
            create_options(&mut b.set, rest, &at)?;
        }
        "Number of entries" => {
            let w = ws.get(3).copied();
            let n_entries = lex::dec(value)
                .ok_or_else(|| at.err(w, format!("expected a number after `Number of entries:`, found {}", lex::found(w))))?;
            b.declared = Some((n_entries, n));
        }
        "Revision" | "Size in memory" | "References" | "Members" => {}
        _ => {
            return Err(at.err(
                Some(first),
                format!(
                    "expected `Type:`, `Revision:`, `Header:`, `Size in memory:`, `References:`, `Number of entries:` or `Members:`, found `{}`",
                    lex::show(trimmed)
                ),
            ))
        }
    }
    Ok(())
}

fn unknown_type(at: &At<'_>, w: Option<Word<'_>>, t: &str) -> ParseError {
    if w.is_none() {
        return at.err(None, format!("expected a set type ({TYPES}), found the end of the line"));
    }
    at.err(w, format!("expected a set type ({TYPES}), found `{}`", lex::show(t)))
}

/// One `ipset save` line.
fn save_line(sets: &mut Vec<Building>, ws: &[Word<'_>], at: &At<'_>) -> Result<(), ParseError> {
    let mut it = ws.iter().copied().peekable();
    let Some(cmd) = it.next() else { return Ok(()) };
    if !matches!(cmd.text, "create" | "add" | "-N" | "-A") {
        let msg =
            if matches!(cmd.text, "flush" | "destroy" | "swap" | "rename" | "del" | "-F" | "-X" | "-W" | "-E" | "-D") {
                format!(
                    "expected `create` or `add`, found `{}` (a restore script; natpath reads `ipset save` output)",
                    lex::show(cmd.text)
                )
            } else {
                format!(
                    "expected `create` or `add` (ipset save) or `Name:` (ipset list), found {}",
                    lex::found(Some(cmd))
                )
            };
        return Err(at.err(Some(cmd), msg));
    }
    while it.peek().is_some_and(|w| w.text == "-exist" || w.text == "-!") {
        it.next();
    }
    let name = it
        .next()
        .ok_or_else(|| at.err(None, format!("expected a set name after `{}`, found the end of the line", cmd.text)))?;
    let rest: Vec<Word<'_>> = it.collect();
    if matches!(cmd.text, "create" | "-N") {
        let loc = Loc::new(at.file, at.line, cmd.col);
        if let Some(e) = duplicate(sets, name.text, &loc) {
            return Err(e);
        }
        let tw = rest.first().copied();
        let mut set = IpSet {
            name: name.text.to_string(),
            kind: SetType::HashIp,
            inet: true,
            options: Vec::new(),
            entries: Vec::new(),
            loc,
        };
        let kind = match tw.and_then(|w| set_type(w.text)) {
            Some(k) => k,
            None => {
                // Keep the set so that its `add` lines are not reported again.
                sets.push(Building { set, declared: None, ok: false });
                return Err(unknown_type(at, tw, tw.map_or("", |w| w.text)));
            }
        };
        set.kind = kind;
        let r = create_options(&mut set, rest.get(1..).unwrap_or(&[]), at);
        sets.push(Building { set, declared: None, ok: r.is_ok() });
        return r;
    }
    let Some(b) = sets.iter_mut().find(|b| b.set.name == name.text) else {
        return Err(at.err(
            Some(name),
            format!("expected a set created by an earlier `create` line, found `{}`", lex::show(name.text)),
        ));
    };
    if !b.ok || !b.set.inet {
        return Ok(());
    }
    let e = entry(b.set.kind, &rest, at)?;
    b.set.entries.push(e);
    Ok(())
}

/// Create options (`ipset save`) or a `Header:` line (`ipset list`).
/// The length of a dotted mask of leading ones (`255.255.255.0`: 24).
fn prefix_of_mask(s: &str) -> Option<u8> {
    let m = u32::from(s.parse::<std::net::Ipv4Addr>().ok()?);
    let n = m.leading_ones();
    (m.checked_shl(n).unwrap_or(0) == 0 && n > 0).then(|| u8::try_from(n).ok()).flatten()
}

/// The prefix a set's `netmask` or `bitmask` masks its addresses to.
fn mask_prefix(set: &IpSet) -> Option<u8> {
    set.options.iter().find_map(|(k, v)| match k.as_str() {
        "netmask" => lex::dec::<u8>(v),
        "bitmask" => prefix_of_mask(v),
        _ => None,
    })
}

/// A `hash:ip` or `bitmap:ip` set with a `netmask` (or a prefix
/// `bitmask`) of N holds N-bit networks: the kernel masks the member it
/// stores and the address it looks up alike, so `add s 10.1.0.0` with
/// netmask 24 holds every address of 10.1.0.0/24. Each member becomes
/// that network (a shorter one stays as it is).
fn mask_members(mut set: IpSet) -> IpSet {
    let Some(n) = mask_prefix(&set).filter(|_| set.inet && matches!(set.kind, SetType::HashIp | SetType::BitmapIp))
    else {
        return set;
    };
    for e in &mut set.entries {
        if let Some(net) = e.net {
            if let Ok(m) = ipnet::Ipv4Net::new(net.addr(), net.prefix_len().min(n)) {
                e.net = Some(m.trunc());
            }
        }
    }
    set
}

fn create_options(set: &mut IpSet, ws: &[Word<'_>], at: &At<'_>) -> Result<(), ParseError> {
    let mut it = ws.iter().copied();
    while let Some(w) = it.next() {
        if CREATE_FLAGS.contains(&w.text) {
            set.options.push((w.text.to_string(), String::new()));
            continue;
        }
        if !CREATE_VALUED.contains(&w.text) {
            return Err(at.err(
                Some(w),
                format!("expected a create option (family, hashsize, maxelem, timeout, counters, comment, range...), found {}", lex::found(Some(w))),
            ));
        }
        let v = it
            .next()
            .ok_or_else(|| at.err(None, format!("expected a value after `{}`, found the end of the line", w.text)))?;
        let ok = match w.text {
            "family" => match v.text {
                "inet" => true,
                "inet6" => {
                    set.inet = false;
                    true
                }
                _ => false,
            },
            "initval" | "markmask" => lex::num(v.text).is_some(),
            "range" => v.text.contains('-') || v.text.contains('/'),
            // The kernel masks both the members and the address it looks
            // up: as a prefix, members become networks of that length
            // (`mask_prefix`); another mask is not modelled.
            "netmask" => lex::dec::<u8>(v.text).is_some_and(|n| (1..=32).contains(&n)),
            "bitmask" => prefix_of_mask(v.text).is_some(),
            _ => lex::dec::<u64>(v.text).is_some(),
        };
        if !ok {
            let what = match w.text {
                "family" => "`inet` or `inet6`",
                "initval" | "markmask" => "a number",
                "range" => "a range `FROM-TO` or a prefix",
                "netmask" => "a prefix length from 1 to 32",
                "bitmask" => "a mask of leading ones (natpath models no other bitmask)",
                _ => "a decimal number",
            };
            return Err(at.err(Some(v), format!("expected {what} after `{}`, found {}", w.text, lex::found(Some(v)))));
        }
        set.options.push((w.text.to_string(), v.text.to_string()));
    }
    Ok(())
}

/// ICMP names ipset prints for `icmp:` ports (ipset's lib/icmp.c table).
fn icmp_name(s: &str) -> Option<(u8, u8)> {
    Some(match s {
        "echo-reply" | "pong" => (0, 0),
        "network-unreachable" => (3, 0),
        "host-unreachable" => (3, 1),
        "protocol-unreachable" => (3, 2),
        "port-unreachable" => (3, 3),
        "fragmentation-needed" => (3, 4),
        "source-route-failed" => (3, 5),
        "network-unknown" => (3, 6),
        "host-unknown" => (3, 7),
        "network-prohibited" => (3, 9),
        "host-prohibited" => (3, 10),
        "TOS-network-unreachable" => (3, 11),
        "TOS-host-unreachable" => (3, 12),
        "communication-prohibited" => (3, 13),
        "host-precedence-violation" => (3, 14),
        "precedence-cutoff" => (3, 15),
        "source-quench" => (4, 0),
        "network-redirect" => (5, 0),
        "host-redirect" => (5, 1),
        "TOS-network-redirect" => (5, 2),
        "TOS-host-redirect" => (5, 3),
        "echo-request" | "ping" => (8, 0),
        "router-advertisement" => (9, 0),
        "router-solicitation" => (10, 0),
        "ttl-zero-during-transit" => (11, 0),
        "ttl-zero-during-reassembly" => (11, 1),
        "ip-header-bad" => (12, 0),
        "required-option-missing" => (12, 1),
        "timestamp-request" => (13, 0),
        "timestamp-reply" => (14, 0),
        "address-mask-request" => (17, 0),
        "address-mask-reply" => (18, 0),
        _ => return None,
    })
}

/// `[PROTO:]PORT[-PORT]` of a port dimension.
fn proto_port(s: &str) -> Option<(Proto, PortRange)> {
    let Some((p, port)) = s.split_once(':') else { return Some((Proto::TCP, port_range(s)?)) };
    let pr = proto(p)?;
    if pr == Proto::ICMP {
        let (t, c) = match port.split_once('/') {
            Some((t, c)) => (lex::dec::<u8>(t)?, lex::dec::<u8>(c)?),
            None => icmp_name(port)?,
        };
        return Some((pr, PortRange::single(u16::from(t) << 8 | u16::from(c))));
    }
    if matches!(pr, Proto::TCP | Proto::UDP | Proto::SCTP | Proto(136)) {
        return Some((pr, port_range(port)?));
    }
    // Protocols without ports are written `PROTO:0`.
    (port == "0").then_some((pr, PortRange::single(0)))
}

/// One element with its options (`ws` starts at the element).
fn entry(kind: SetType, ws: &[Word<'_>], at: &At<'_>) -> Result<SetEntry, ParseError> {
    let Some(w) = ws.first().copied() else {
        return Err(at.err(None, format!("expected an element of a {} set, found the end of the line", kind.as_str())));
    };
    let mut e =
        SetEntry { net: None, port: None, net2: None, iface: None, set: None, nomatch: false, options: Vec::new() };
    let parts: Vec<&str> = w.text.split(',').collect();
    let bad = |what: &str| {
        at.err(Some(w), format!("expected {what} for a {} set, found {}", kind.as_str(), lex::found(Some(w))))
    };
    match kind {
        SetType::HashIp | SetType::HashNet | SetType::BitmapIp => match parts.as_slice() {
            [a] => e.net = Some(lex::prefix(a).ok_or_else(|| bad("an element `ADDR[/LEN]`"))?),
            _ => return Err(bad("an element `ADDR[/LEN]`")),
        },
        SetType::HashIpPort | SetType::HashNetPort => match parts.as_slice() {
            [a, p] => {
                let what = "an element `ADDR[/LEN],[PROTO:]PORT`";
                e.net = Some(lex::prefix(a).ok_or_else(|| bad(what))?);
                e.port = Some(proto_port(p).ok_or_else(|| bad(what))?);
            }
            _ => return Err(bad("an element `ADDR[/LEN],[PROTO:]PORT`")),
        },
        SetType::HashIpPortIp | SetType::HashIpPortNet => match parts.as_slice() {
            [a, p, b] => {
                let what = "an element `ADDR,[PROTO:]PORT,ADDR[/LEN]`";
                e.net = Some(lex::prefix(a).ok_or_else(|| bad(what))?);
                e.port = Some(proto_port(p).ok_or_else(|| bad(what))?);
                e.net2 = Some(lex::prefix(b).ok_or_else(|| bad(what))?);
            }
            _ => return Err(bad("an element `ADDR,[PROTO:]PORT,ADDR[/LEN]`")),
        },
        SetType::HashNetIface => match parts.as_slice() {
            [a, i] => {
                let what = "an element `ADDR[/LEN],IFACE`";
                e.net = Some(lex::prefix(a).ok_or_else(|| bad(what))?);
                let iface = i.strip_prefix("physdev:").unwrap_or(i);
                if iface.is_empty() {
                    return Err(bad(what));
                }
                e.iface = Some(iface.to_string());
            }
            _ => return Err(bad("an element `ADDR[/LEN],IFACE`")),
        },
        SetType::BitmapPort => {
            let p = w.text.rsplit_once(':').map_or(w.text, |(_, p)| p);
            e.port = Some((Proto::ALL, port_range(p).ok_or_else(|| bad("a port or port range"))?));
        }
        SetType::ListSet => e.set = Some(w.text.to_string()),
    }
    let mut it = ws.iter().skip(1).copied();
    while let Some(o) = it.next() {
        if o.text == "nomatch" {
            e.nomatch = true;
            continue;
        }
        if !ENTRY_VALUED.contains(&o.text) {
            return Err(at.err(
                Some(o),
                format!(
                    "expected an element option (timeout, packets, bytes, comment, nomatch, skbmark...), found {}",
                    lex::found(Some(o))
                ),
            ));
        }
        let v = it
            .next()
            .ok_or_else(|| at.err(None, format!("expected a value after `{}`, found the end of the line", o.text)))?;
        if matches!(o.text, "timeout" | "packets" | "bytes") && lex::dec::<u64>(v.text).is_none() {
            return Err(
                at.err(Some(v), format!("expected a decimal number after `{}`, found {}", o.text, lex::found(Some(v))))
            );
        }
        e.options.push((o.text.to_string(), unquote(v.text).to_string()));
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_netmask_makes_members_networks() {
        let text = "create s hash:ip family inet hashsize 1024 maxelem 65536 netmask 24 bucketsize 12 initval 0xcce9bff6\nadd s 10.1.0.0\ncreate b hash:ip family inet bitmask 255.255.0.0\nadd b 10.1.0.0\ncreate p hash:ip family inet\nadd p 10.1.0.0\n";
        let sets = parse(text, "ipset-save").unwrap();
        let nets: Vec<String> = sets.iter().map(|s| s.entries[0].net.unwrap().to_string()).collect();
        assert_eq!(nets, ["10.1.0.0/24", "10.1.0.0/16", "10.1.0.0/32"]);
        let err = parse("create b hash:ip family inet bitmask 255.255.0.255\n", "ipset-save").unwrap_err();
        assert!(err.to_string().contains("a mask of leading ones"), "{err}");
        assert!(parse("create s hash:ip family inet netmask 33\n", "ipset-save").is_err());
    }

    #[test]
    fn save_with_options() {
        let t = "create kp hash:ip,port family inet hashsize 1024 maxelem 65536 timeout 0 counters comment\n\
                 add kp 10.0.0.1,tcp:80 timeout 0 packets 3 bytes 180 comment \"default/web: http\"\n\
                 add kp 10.0.0.2,udp:53\n\
                 add kp 10.0.0.3,icmp:echo-request\n\
                 create n hash:net family inet\nadd n 10.0.0.0/8\nadd n 10.1.0.0/16 nomatch\n\
                 create ports bitmap:port range 1-65535\nadd ports 30000\n\
                 create l list:set size 8\nadd l n\n\
                 create weave-;rGqyMIl1HN^cfDki~Z$3]6!N hash:ip family inet hashsize 1024 maxelem 65536\n";
        let sets = parse(t, "t").unwrap();
        assert_eq!(sets.len(), 5);
        assert_eq!(sets[0].entries[0].options[3], ("comment".to_string(), "default/web: http".to_string()));
        assert_eq!(sets[0].entries[2].port, Some((Proto::ICMP, PortRange::single(0x0800))));
        assert!(sets[1].entries[1].nomatch);
        assert_eq!(sets[4].name, "weave-;rGqyMIl1HN^cfDki~Z$3]6!N");
    }

    #[test]
    fn list_cut_short() {
        let t = "Name: a\nType: hash:ip\nRevision: 4\nHeader: family inet hashsize 1024 maxelem 65536\nSize in memory: 1\nReferences: 0\nNumber of entries: 2\nMembers:\n10.0.0.1\n";
        let e = parse(t, "t").unwrap_err();
        assert_eq!(e.to_string(), "t:7:1: set `a` declares 2 entries, found 1: the paste looks cut");
    }
}
