//! `ip route show table all` (and plain `ip route`, `ip route show table
//! N`) into [`Route`]s, plus the word-level helpers the other iproute2
//! parsers share ([`lex`]).
//!
//! Contract: never panics on any input; every problem is a [`ParseError`]
//! with file, line and column that says what was expected and what was
//! found, and every line of the file is checked, so all errors are reported.
//! The grammar is the one iproute2's `print_route()` writes (ip/iproute.c):
//! an optional type word (`unicast`, `local`, `broadcast`, `multicast`,
//! `anycast`, `blackhole`, `unreachable`, `prohibit`, `throw`, `nat`), the
//! destination (`default` or `ADDR[/LEN]`, a bare address being a /32),
//! then `via`, `dev`, `table`, `proto`, `scope`, `src`, `metric` and the
//! other attributes in any order, with multipath next hops on the following
//! `nexthop` lines. Old iproute2's double spaces and trailing spaces are
//! plain whitespace. IPv6 routes (`fe80::/64`, `unreachable ::/96`, a
//! `via` with an IPv6 gateway) are skipped: natpath models IPv4 only. A word
//! starting with `#` begins a comment to the end of the line (iproute2 never
//! prints one; people annotate pasted routes). Routes of type `local`,
//! `broadcast`, `anycast` and `nat` without a `table` word are in table
//! `local`, as `ip route add` puts them and `ip route show table local`
//! prints them; other routes without one are in `main`.

use crate::error::{ParseError, ParseErrors};
use crate::netstate::{table_id, NextHop, Route, RouteType, TABLE_LOCAL, TABLE_MAIN};
use lex::Cursor;
use std::sync::Arc;

/// Word-level helpers shared by the iproute2, ipset and sysctl parsers:
/// lines with their numbers, whitespace-separated words with their columns,
/// and the value parsers every format uses.
///
/// Contract: nothing here panics; columns are 1-based and count characters.
pub(crate) mod lex {
    use crate::error::ParseError;
    use crate::loc::Loc;
    use crate::netstate::Scope;
    use ipnet::Ipv4Net;
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    /// One whitespace-separated word and the column of its first character.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) struct Word<'a> {
        /// The word.
        pub text: &'a str,
        /// 1-based column, in characters.
        pub col: u32,
    }

    impl Word<'_> {
        /// The column just past the word.
        pub fn end(&self) -> u32 {
            self.col.saturating_add(count(self.text))
        }
    }

    fn count(s: &str) -> u32 {
        u32::try_from(s.chars().count()).unwrap_or(u32::MAX)
    }

    /// Lines with their 1-based numbers; a `\r` before `\n` is dropped.
    pub(crate) fn lines(text: &str) -> impl Iterator<Item = (u32, &str)> {
        text.split('\n').enumerate().map(|(i, l)| {
            let n = u32::try_from(i).unwrap_or(u32::MAX - 1).saturating_add(1);
            (n, l.strip_suffix('\r').unwrap_or(l))
        })
    }

    /// The words of `line`, whose first character is at column `first_col`.
    pub(crate) fn words(line: &str, first_col: u32) -> Vec<Word<'_>> {
        let mut out = Vec::new();
        let mut start: Option<(usize, u32)> = None;
        let mut col = first_col;
        for (i, c) in line.char_indices() {
            if c.is_whitespace() {
                if let Some((s, sc)) = start.take() {
                    if let Some(text) = line.get(s..i) {
                        out.push(Word { text, col: sc });
                    }
                }
            } else if start.is_none() {
                start = Some((i, col));
            }
            col = col.saturating_add(1);
        }
        if let Some((s, sc)) = start {
            if let Some(text) = line.get(s..) {
                out.push(Word { text, col: sc });
            }
        }
        out
    }

    /// The words of `line` up to a word that starts with `#` (a comment).
    pub(crate) fn words_before_comment(line: &str) -> Vec<Word<'_>> {
        let mut w = words(line, 1);
        if let Some(i) = w.iter().position(|w| w.text.starts_with('#')) {
            w.truncate(i);
        }
        w
    }

    /// User text for a message: control characters and backticks escaped,
    /// cut after 40 characters.
    pub(crate) fn show(s: &str) -> String {
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i == 40 {
                out.push('…');
                break;
            }
            if c.is_control() || c == '`' || c == '\u{fffd}' {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        out
    }

    /// `` `word` `` or `the end of the line`.
    pub(crate) fn found(w: Option<Word<'_>>) -> String {
        match w {
            Some(w) => format!("`{}`", show(w.text)),
            None => "the end of the line".to_string(),
        }
    }

    /// A dotted-quad IPv4 address.
    pub(crate) fn ipv4(s: &str) -> Option<Ipv4Addr> {
        s.parse().ok()
    }

    /// `ADDR/LEN` or a bare `ADDR` (a /32).
    pub(crate) fn prefix(s: &str) -> Option<Ipv4Net> {
        match s.split_once('/') {
            Some((a, l)) => {
                let addr = ipv4(a)?;
                if l.is_empty() || !l.bytes().all(|b| b.is_ascii_digit()) || l.len() > 2 {
                    return None;
                }
                Ipv4Net::new(addr, l.parse().ok()?).ok()
            }
            None => Ipv4Net::new(ipv4(s)?, 32).ok(),
        }
    }

    /// A decimal number.
    pub(crate) fn dec<T: std::str::FromStr>(s: &str) -> Option<T> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    }

    /// A number in decimal or, with `0x`, hexadecimal.
    pub(crate) fn num(s: &str) -> Option<u32> {
        match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(h) if !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()) => u32::from_str_radix(h, 16).ok(),
            Some(_) => None,
            None => dec(s),
        }
    }

    /// `scope` names of iproute2's rt_scopes, or a number.
    pub(crate) fn scope(s: &str) -> Option<Scope> {
        Some(match s {
            "global" | "universe" => Scope::Global,
            "site" => Scope::Site,
            "link" => Scope::Link,
            "host" => Scope::Host,
            "nowhere" => Scope::Nowhere,
            _ => match dec::<u8>(s)? {
                0 => Scope::Global,
                200 => Scope::Site,
                253 => Scope::Link,
                254 => Scope::Host,
                255 => Scope::Nowhere,
                n => Scope::Other(n),
            },
        })
    }

    /// The words of one line, consumed left to right, with what an error
    /// needs to say where it is.
    pub(crate) struct Cursor<'a, 'f> {
        words: Vec<Word<'a>>,
        pos: usize,
        file: &'f Arc<str>,
        line: u32,
        end: u32,
    }

    impl<'a, 'f> Cursor<'a, 'f> {
        /// A cursor over `words` of `line` in `file`.
        pub fn new(words: Vec<Word<'a>>, file: &'f Arc<str>, line: u32) -> Self {
            let end = words.last().map_or(1, Word::end);
            Cursor { words, pos: 0, file, line, end }
        }

        /// The next word.
        pub fn next(&mut self) -> Option<Word<'a>> {
            let w = self.words.get(self.pos).copied();
            if w.is_some() {
                self.pos += 1;
            }
            w
        }

        /// The next word, not consumed.
        pub fn peek(&self) -> Option<Word<'a>> {
            self.words.get(self.pos).copied()
        }

        /// The words not consumed yet, all consumed.
        pub fn rest(&mut self) -> Vec<Word<'a>> {
            let r = self.words.get(self.pos..).map(<[Word<'a>]>::to_vec).unwrap_or_default();
            self.pos = self.words.len();
            r
        }

        /// The location of column `col` of this line.
        pub fn loc(&self, col: u32) -> Loc {
            Loc::new(self.file, self.line, col)
        }

        /// An error at `w`, or at the end of the line when `w` is `None`.
        pub fn err(&self, w: Option<Word<'_>>, msg: impl Into<String>) -> ParseError {
            let col = w.map_or(self.end, |w| w.col);
            ParseError::new(self.loc(col), msg)
        }

        /// The value word after `key`; the error says `expected {what} after
        /// `key`, found the end of the line`.
        pub fn value(&mut self, key: Word<'_>, what: &str) -> Result<Word<'a>, ParseError> {
            match self.next() {
                Some(w) => Ok(w),
                None => {
                    Err(self
                        .err(None, format!("expected {what} after `{}`, found the end of the line", show(key.text))))
                }
            }
        }

        /// The value after `key`, converted by `conv`; errors say what was
        /// expected after `key` and what was found.
        pub fn typed<T>(
            &mut self,
            key: Word<'_>,
            what: &str,
            conv: impl Fn(&str) -> Option<T>,
        ) -> Result<T, ParseError> {
            let w = self.value(key, what)?;
            conv(w.text).ok_or_else(|| {
                self.err(Some(w), format!("expected {what} after `{}`, found {}", show(key.text), found(Some(w))))
            })
        }
    }
}

const TYPES: &str = "unicast, local, broadcast, multicast, anycast, blackhole, unreachable, prohibit, throw or nat";

fn route_type(s: &str) -> Option<RouteType> {
    Some(match s {
        "unicast" => RouteType::Unicast,
        "local" => RouteType::Local,
        "broadcast" => RouteType::Broadcast,
        "multicast" => RouteType::Multicast,
        "anycast" => RouteType::Anycast,
        "blackhole" => RouteType::Blackhole,
        "unreachable" => RouteType::Unreachable,
        "prohibit" => RouteType::Prohibit,
        "throw" => RouteType::Throw,
        "nat" => RouteType::Nat,
        _ => return None,
    })
}

/// iproute2's rt_protos names for the numbers it prints by name.
fn proto_name(s: &str) -> String {
    let known = match lex::dec::<u8>(s) {
        Some(0) => "unspec",
        Some(1) => "redirect",
        Some(2) => "kernel",
        Some(3) => "boot",
        Some(4) => "static",
        Some(8) => "gated",
        Some(9) => "ra",
        Some(10) => "mrt",
        Some(11) => "zebra",
        Some(12) => "bird",
        Some(13) => "dnrouted",
        Some(14) => "xorp",
        Some(15) => "ntk",
        Some(16) => "dhcp",
        Some(17) => "mrouted",
        Some(18) => "keepalived",
        Some(42) => "babel",
        Some(99) => "openr",
        Some(186) => "bgp",
        Some(187) => "isis",
        Some(188) => "ospf",
        Some(189) => "rip",
        Some(192) => "eigrp",
        _ => return s.to_string(),
    };
    known.to_string()
}

/// Route attributes kept in [`Route::extra`] with a value.
const VALUED: &[&str] = &[
    "mtu",
    "advmss",
    "rtt",
    "rttvar",
    "reordering",
    "window",
    "cwnd",
    "initcwnd",
    "initrwnd",
    "ssthresh",
    "realms",
    "expires",
    "hoplimit",
    "features",
    "quickack",
    "congctl",
    "fastopen_no_cookie",
    "rto_min",
    "nhid",
    "pref",
    "error",
    "ttl-propagate",
];
/// Route flags kept in [`Route::extra`] with an empty value.
const FLAGS: &[&str] = &[
    "linkdown",
    "dead",
    "pervasive",
    "offload",
    "trap",
    "notify",
    "unresolved",
    "rt_offload",
    "rt_trap",
    "rt_offload_failed",
    "cache",
];
/// Attributes whose value may be preceded by `lock`.
const LOCKABLE: &[&str] = &[
    "mtu",
    "advmss",
    "rtt",
    "rttvar",
    "reordering",
    "window",
    "cwnd",
    "initcwnd",
    "initrwnd",
    "ssthresh",
    "hoplimit",
    "congctl",
    "rto_min",
];

/// What the previous route line became, for its `nexthop` lines.
enum Last {
    None,
    Route(usize),
    Skipped,
}

/// Parse `ip route` output (any table, or `table all`).
///
/// Rejects, with the line and column: a route listed twice (at its second
/// line, naming the first), an unknown type word, a destination
/// that is not `default` or an IPv4 prefix (or has host bits set, which the
/// kernel refuses), an attribute natpath does not know, a value missing at
/// the end of the line or of the wrong form, an `encap` (lightweight tunnel)
/// and an IPv6 gateway for an IPv4 route.
pub fn parse(text: &str, file: &str) -> Result<Vec<Route>, ParseErrors> {
    let file: Arc<str> = Arc::from(file);
    let mut routes: Vec<Route> = Vec::new();
    let mut errs = ParseErrors::default();
    let mut last = Last::None;
    for (n, line) in lex::lines(text) {
        let words = lex::words_before_comment(line);
        let Some(first) = words.first().copied() else { continue };
        let mut cur = Cursor::new(words, &file, n);
        if first.text == "nexthop" {
            cur.next();
            match last {
                Last::Route(i) => {
                    let idx = routes.get(i).map_or(0, |r| r.nexthops.len());
                    match nexthop(&mut cur, idx) {
                        Ok(Some((hop, flags))) => {
                            if let Some(r) = routes.get_mut(i) {
                                r.nexthops.push(hop);
                                r.extra.extend(flags);
                            }
                        }
                        Ok(None) => {}
                        Err(e) => errs.push(e),
                    }
                }
                Last::Skipped => {}
                Last::None => {
                    errs.push(cur.err(Some(first), "expected a route before this `nexthop` line, found none"))
                }
            }
            continue;
        }
        match route(&mut cur) {
            Ok(Some(r)) => {
                routes.push(r);
                last = Last::Route(routes.len().saturating_sub(1));
            }
            Ok(None) => last = Last::Skipped,
            Err(e) => {
                errs.push(e);
                last = Last::Skipped;
            }
        }
    }
    duplicates(&routes, &mut errs);
    if errs.is_empty() {
        Ok(routes)
    } else {
        Err(errs)
    }
}

/// A route listed twice, at the second listing. The kernel holds a route
/// once: `ip route add` of a route with the table, destination, TOS and
/// metric of one it has answers `File exists` whatever the rest, and
/// `ip route append`/`prepend`, which do add a route beside such a one
/// (another gateway, device, type, protocol, scope, source or metric
/// attribute), answer `File exists` for a route equal to it in every
/// attribute. So one capture never lists the same route twice (checked
/// with iproute2 in a network namespace); such a file was pasted or
/// concatenated, and the FIB it describes is not a kernel's.
fn duplicates(routes: &[Route], errs: &mut ParseErrors) {
    use std::collections::hash_map::Entry;
    use std::collections::HashMap;
    let mut seen: HashMap<(u32, ipnet::Ipv4Net, Option<u8>, u32), Vec<usize>> = HashMap::new();
    for (i, r) in routes.iter().enumerate() {
        let key = (r.table, r.dst, r.tos, r.metric);
        match seen.entry(key) {
            Entry::Vacant(e) => {
                e.insert(vec![i]);
            }
            Entry::Occupied(mut e) => {
                // `Route`'s equality leaves out where it was read.
                match e.get().iter().find_map(|&j| routes.get(j).filter(|x| *x == r)) {
                    Some(first) => errs.push(ParseError::new(
                        r.loc.clone(),
                        format!(
                            "expected each route once, found the route of line {} again: the kernel holds a route once (adding it again answers `File exists`), so one `ip route show table all` lists it once",
                            first.loc.line
                        ),
                    )),
                    None => e.get_mut().push(i),
                }
            }
        }
    }
}

/// One route line; `None` for an IPv6 route.
fn route(cur: &mut Cursor<'_, '_>) -> Result<Option<Route>, ParseError> {
    let Some(first) = cur.next() else { return Ok(None) };
    let (kind, dst_word) = match route_type(first.text) {
        Some(k) => match cur.next() {
            Some(d) => (k, d),
            None => {
                return Err(
                    cur.err(None, format!("expected a destination after `{}`, found the end of the line", first.text))
                )
            }
        },
        None => (RouteType::Unicast, first),
    };
    if dst_word.text.contains(':') {
        return Ok(None);
    }
    let dst = if dst_word.text == "default" {
        ipnet::Ipv4Net::default()
    } else {
        match lex::prefix(dst_word.text) {
            Some(p) => p,
            None => {
                let looks_numeric = dst_word.text.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'/');
                let msg = if Some(dst_word) != Some(first) || looks_numeric {
                    format!(
                        "expected a destination prefix (`ADDR/LEN`, `ADDR` or `default`), found {}",
                        lex::found(Some(dst_word))
                    )
                } else if cur
                    .peek()
                    .is_some_and(|w| w.text == "default" || lex::prefix(w.text).is_some() || w.text.contains(':'))
                {
                    format!("unknown route type {}: expected {TYPES}", lex::found(Some(first)))
                } else {
                    format!("expected a route type or a destination prefix, found {}", lex::found(Some(first)))
                };
                return Err(cur.err(Some(dst_word), msg));
            }
        }
    };
    if dst.addr() != dst.network() {
        return Err(cur.err(
            Some(dst_word),
            format!(
                "expected a destination prefix without host bits, found `{}` (the kernel refuses it; `{}` was probably meant)",
                lex::show(dst_word.text),
                dst.trunc()
            ),
        ));
    }
    let mut r = Route {
        table: TABLE_MAIN,
        kind,
        dst,
        tos: None,
        nexthops: Vec::new(),
        proto: None,
        scope: None,
        src: None,
        metric: 0,
        extra: Vec::new(),
        loc: cur.loc(first.col),
    };
    let mut table = None;
    let mut hop = NextHop { via: None, dev: None, onlink: false, weight: None };
    while let Some(w) = cur.next() {
        match w.text {
            "via" => {
                let mut v = cur.value(w, "a gateway address")?;
                if v.text == "inet" {
                    v = cur.value(v, "a gateway address")?;
                } else if v.text == "inet6" {
                    return Err(cur.err(Some(v), "expected an IPv4 gateway after `via`, found `inet6` (IPv6 next hops of IPv4 routes are not supported)"));
                }
                if v.text.contains(':') {
                    return Ok(None);
                }
                hop.via = Some(lex::ipv4(v.text).ok_or_else(|| {
                    cur.err(Some(v), format!("expected a gateway address after `via`, found {}", lex::found(Some(v))))
                })?);
            }
            "dev" | "oif" => hop.dev = Some(cur.value(w, "a device name")?.text.to_string()),
            "onlink" => hop.onlink = true,
            "weight" => hop.weight = Some(cur.typed(w, "a weight", lex::dec)?),
            "table" => table = Some(cur.typed(w, "a table name or number", table_id)?),
            "proto" | "protocol" => r.proto = Some(proto_name(cur.value(w, "a protocol name or number")?.text)),
            "scope" => {
                r.scope = Some(cur.typed(w, "a scope (global, site, link, host, nowhere or a number)", lex::scope)?)
            }
            "src" => {
                let v = cur.value(w, "a source address")?;
                if v.text.contains(':') {
                    return Ok(None);
                }
                r.src = Some(lex::ipv4(v.text).ok_or_else(|| {
                    cur.err(Some(v), format!("expected a source address after `src`, found {}", lex::found(Some(v))))
                })?);
            }
            "metric" | "preference" | "priority" => r.metric = cur.typed(w, "a metric", lex::dec)?,
            "tos" | "dsfield" => {
                r.tos = Some(cur.typed(w, "a TOS value", |s| lex::num(s).and_then(|n| u8::try_from(n).ok()))?)
            }
            "nexthop" => {
                let idx = r.nexthops.len();
                if hop.via.is_some() || hop.dev.is_some() {
                    r.nexthops.push(std::mem::replace(
                        &mut hop,
                        NextHop { via: None, dev: None, onlink: false, weight: None },
                    ));
                }
                match nexthop(cur, idx)? {
                    Some((h, flags)) => {
                        r.nexthops.push(h);
                        r.extra.extend(flags);
                    }
                    None => return Ok(None),
                }
            }
            "encap" => {
                return Err(cur.err(
                    Some(w),
                    "expected a route attribute, found `encap` (lightweight tunnel routes are not supported)",
                ))
            }
            k if FLAGS.contains(&k) => r.extra.push((k.to_string(), String::new())),
            k if VALUED.contains(&k) => {
                let mut v = cur.value(w, "a value")?;
                let mut value = v.text.to_string();
                if v.text == "lock" && LOCKABLE.contains(&k) {
                    v = cur.value(v, "a value")?;
                    value = format!("lock {}", v.text);
                }
                r.extra.push((k.to_string(), value));
            }
            _ => {
                return Err(cur.err(
                    Some(w),
                    format!(
                    "expected a route attribute (via, dev, table, proto, scope, src, metric, onlink, mtu...), found {}",
                    lex::found(Some(w))
                ),
                ))
            }
        }
    }
    if hop.via.is_some() || hop.dev.is_some() || hop.onlink {
        r.nexthops.insert(0, hop);
    }
    r.table = table.unwrap_or(match kind {
        RouteType::Local | RouteType::Broadcast | RouteType::Anycast | RouteType::Nat => TABLE_LOCAL,
        _ => TABLE_MAIN,
    });
    Ok(Some(r))
}

type Flags = Vec<(String, String)>;

/// The words after `nexthop` up to the next `nexthop` (which stays
/// unconsumed); `None` for an IPv6 gateway. Next-hop flags (`dead`,
/// `linkdown`...) go to the route's extra attributes as `(flag, "nexthop N")`.
fn nexthop(cur: &mut Cursor<'_, '_>, idx: usize) -> Result<Option<(NextHop, Flags)>, ParseError> {
    let mut hop = NextHop { via: None, dev: None, onlink: false, weight: None };
    let mut flags = Vec::new();
    while let Some(w) = cur.peek() {
        if w.text == "nexthop" {
            break;
        }
        cur.next();
        match w.text {
            "via" => {
                let mut v = cur.value(w, "a gateway address")?;
                if v.text == "inet" {
                    v = cur.value(v, "a gateway address")?;
                }
                if v.text.contains(':') || v.text == "inet6" {
                    return Ok(None);
                }
                hop.via = Some(lex::ipv4(v.text).ok_or_else(|| {
                    cur.err(Some(v), format!("expected a gateway address after `via`, found {}", lex::found(Some(v))))
                })?);
            }
            "dev" => hop.dev = Some(cur.value(w, "a device name")?.text.to_string()),
            "weight" => hop.weight = Some(cur.typed(w, "a weight", lex::dec)?),
            "onlink" => hop.onlink = true,
            "realms" => {
                cur.value(w, "a realm")?;
            }
            k if FLAGS.contains(&k) => flags.push((k.to_string(), format!("nexthop {idx}"))),
            _ => {
                return Err(cur.err(
                    Some(w),
                    format!("expected a next hop attribute (via, dev, weight, onlink), found {}", lex::found(Some(w))),
                ))
            }
        }
    }
    if hop.via.is_none() && hop.dev.is_none() {
        return Err(
            cur.err(cur.peek(), format!("expected `via` or `dev` in a `nexthop`, found {}", lex::found(cur.peek())))
        );
    }
    Ok(Some((hop, flags)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_have_char_columns() {
        let w = lex::words("  a\tβγ  c ", 1);
        let got: Vec<(&str, u32)> = w.iter().map(|w| (w.text, w.col)).collect();
        assert_eq!(got, vec![("a", 3), ("βγ", 5), ("c", 9)]);
    }

    #[test]
    fn multipath() {
        let t = "default proto static metric 10 \n\tnexthop via 10.0.0.1 dev eth0 weight 1 \n\tnexthop via 10.0.1.1 dev eth1 weight 2 linkdown\n";
        let r = parse(t, "t").unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].nexthops.len(), 2);
        assert_eq!(r[0].nexthops[1].weight, Some(2));
        assert_eq!(r[0].extra, vec![("linkdown".to_string(), "nexthop 1".to_string())]);
    }
}
