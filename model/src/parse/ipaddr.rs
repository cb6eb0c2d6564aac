//! `ip addr show` (multi-line) and `ip -o addr show` (one line per address,
//! `\` where the multi-line form breaks a line) into [`Interface`]s in the
//! kernel's device order; the same reader takes `ip -d link show`, whose
//! detail lines give the device kind and the VXLAN parameters. The other two
//! link-layer dumps of a snapshot, `ip neigh show` and `bridge fdb show`,
//! are read here too ([`parse_neigh`], [`parse_fdb`]).
//!
//! Contract: never panics on any input; every problem is a [`ParseError`]
//! with file, line and column saying what was expected and what was found,
//! and all lines are checked, so every error of the file is reported. The
//! grammar follows iproute2's ip/ipaddress.c: a header `N: NAME[@LINK]:
//! <FLAGS> mtu .. qdisc .. state ..`, a `link/KIND [ADDR] [brd ..]
//! [link-netns(id) ..]` line, `inet` lines (`ADDR/LEN` or `ADDR peer
//! PEER/LEN`, `brd`, `scope`, flags such as `secondary` and `dynamic`, and
//! the label last), `valid_lft` and `altname` lines. IPv6 (`inet6` lines)
//! is skipped: natpath models IPv4. A line starting with `#` is a comment
//! (the shell prompt people paste with the command). An `inet` address whose
//! text is not an IPv4 address (an anonymised `[PUBLIC IP HERE]`) is an
//! error: guessing it would change which address MASQUERADE picks.

use super::iproute::lex::{self, Cursor, Word};
use crate::error::{ParseError, ParseErrors};
use crate::netstate::{FdbEntry, IfAddr, Interface, Neighbor, Scope, Vxlan};
use std::sync::Arc;

/// Address flags `ip addr` prints after the scope (ip/ipaddress.c `ifa_flag_names`).
const ADDR_FLAGS: &[&str] = &[
    "secondary",
    "temporary",
    "primary",
    "dynamic",
    "nodad",
    "optimistic",
    "dadfailed",
    "home",
    "deprecated",
    "tentative",
    "permanent",
    "mngtmpaddr",
    "noprefixroute",
    "autojoin",
    "stable-privacy",
];

/// Header attributes that take a value.
const HEADER_VALUED: &[&str] = &["mtu", "qdisc", "master", "state", "mode", "group", "qlen", "link-netnsid", "netns"];

/// Parse `ip addr show`, `ip -o addr show` or `ip -d link show` output.
///
/// Interfaces come out in the order of their first line; the `-o` form's
/// several lines per device are merged into one interface. Rejects, with
/// the line and column: a header that is not `N: NAME: <FLAGS> ...`, the
/// same device index twice in the multi-line form, an address line before
/// any header, an `inet` address or `peer`/`brd` value that is not IPv4, an
/// unknown scope or attribute, and a value missing at the end of the line.
pub fn parse(text: &str, file: &str) -> Result<Vec<Interface>, ParseErrors> {
    let file: Arc<str> = Arc::from(file);
    let mut ifs: Vec<Interface> = Vec::new();
    let mut errs = ParseErrors::default();
    // The interface the continuation lines belong to, and whether its link
    // line carried `ip -d` details (then unknown lines are detail lines).
    let mut cur_if: Option<usize> = None;
    let mut header_failed = false;
    let mut st = Detail::default();
    for (n, line) in lex::lines(text) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        // `ip -o`: one physical line holds what the multi-line form prints
        // on several, separated by `\`.
        let first_is_header = lex::words(line, 1).first().is_some_and(|w| is_index(w.text));
        let segments: Vec<(u32, &str)> = if first_is_header && line.contains('\\') {
            let mut v = Vec::new();
            let mut col = 1u32;
            for seg in line.split('\\') {
                v.push((col, seg));
                col = col.saturating_add(u32::try_from(seg.chars().count()).unwrap_or(u32::MAX)).saturating_add(1);
            }
            v
        } else {
            vec![(1, line)]
        };
        for (col, seg) in segments {
            let words = lex::words(seg, col);
            let Some(first) = words.first().copied() else { continue };
            let mut cur = Cursor::new(words, &file, n);
            if is_index(first.text) {
                st = Detail::default();
                match header(&mut cur, &mut ifs) {
                    Ok(i) => {
                        cur_if = Some(i);
                        header_failed = false;
                    }
                    Err(e) => {
                        errs.push(e);
                        cur_if = None;
                        header_failed = true;
                    }
                }
                // `ip -o addr`: the address follows the name on the same line.
                let (Some(i), Some(w)) = (cur_if, cur.peek()) else { continue };
                if let Some(iface) = ifs.get_mut(i) {
                    if let Err(e) = body(&mut cur, w, iface, &mut st) {
                        errs.push(e);
                    }
                }
                continue;
            }
            let Some(iface) = cur_if.and_then(|i| ifs.get_mut(i)) else {
                // After a header that was wrong (and reported), its lines are
                // skipped rather than reported again.
                if !header_failed {
                    errs.push(cur.err(
                        Some(first),
                        format!("expected an interface line `N: NAME: <FLAGS> ...`, found {}", lex::found(Some(first))),
                    ));
                }
                continue;
            };
            if let Err(e) = body(&mut cur, first, iface, &mut st) {
                errs.push(e);
            }
        }
    }
    if errs.is_empty() {
        Ok(ifs)
    } else {
        Err(errs)
    }
}

/// Whether the current interface's link line carried `ip -d` details, and
/// how many detail lines followed it.
#[derive(Default)]
struct Detail {
    on: bool,
    lines: u32,
}

/// One line (or `-o` segment) of an interface, starting at `first`.
fn body(cur: &mut Cursor<'_, '_>, first: Word<'_>, iface: &mut Interface, st: &mut Detail) -> Result<(), ParseError> {
    match first.text {
        "inet" => {
            cur.next();
            inet(cur, first, iface)
        }
        "inet6" | "valid_lft" | "altname" => Ok(()),
        t if t.starts_with("link/") => {
            cur.next();
            st.on |= link(cur, first, iface)?;
            Ok(())
        }
        "promiscuity" => {
            st.on = true;
            Ok(())
        }
        _ if st.on => {
            st.lines = st.lines.saturating_add(1);
            if st.lines == 1 && first.text != "addrgenmode" {
                cur.next();
                kind(cur, first, iface)
            } else {
                Ok(())
            }
        }
        _ => Err(cur.err(
            Some(first),
            format!(
                "expected `inet`, `inet6`, `link/...`, `valid_lft` or `altname` in the lines of interface `{}`, found {}",
                lex::show(&iface.name),
                lex::found(Some(first))
            ),
        )),
    }
}

/// `N:` with N a number.
fn is_index(w: &str) -> bool {
    w.strip_suffix(':').is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// A header line; returns the index in `ifs` of its interface.
fn header(cur: &mut Cursor<'_, '_>, ifs: &mut Vec<Interface>) -> Result<usize, ParseError> {
    let idx_word = cur.next().ok_or_else(|| cur.err(None, "expected an interface index"))?;
    let index: u32 = lex::dec(idx_word.text.trim_end_matches(':')).ok_or_else(|| {
        cur.err(Some(idx_word), format!("expected an interface index `N:`, found {}", lex::found(Some(idx_word))))
    })?;
    let name_word = cur.value(idx_word, "an interface name")?;
    // The multi-line form writes `NAME:`; the `-o addr` lines write `NAME`.
    let (raw, full) = match name_word.text.strip_suffix(':') {
        Some(n) => (n, true),
        None => (name_word.text, false),
    };
    let (name, link) = match raw.split_once('@') {
        Some((a, b)) => (a, Some(b.to_string())),
        None => (raw, None),
    };
    if name.is_empty() {
        return Err(cur.err(
            Some(name_word),
            format!("expected an interface name after `{}`, found {}", idx_word.text, lex::found(Some(name_word))),
        ));
    }
    let existing = ifs.iter().position(|i| i.index == index);
    let flags_word = cur.peek().filter(|w| w.text.starts_with('<'));
    if flags_word.is_none() {
        // `ip -o addr`: `N: NAME inet ...` adds to the device it names.
        if full {
            return Err(cur.err(
                cur.peek(),
                format!(
                    "expected interface flags `<...>` after `{}`, found {}",
                    lex::show(name_word.text),
                    lex::found(cur.peek())
                ),
            ));
        }
        return match existing {
            Some(i) if ifs.get(i).is_some_and(|f| f.name == name) => Ok(i),
            Some(i) => {
                let other = ifs.get(i).map(|f| f.name.clone()).unwrap_or_default();
                Err(cur.err(
                    Some(name_word),
                    format!(
                        "expected interface {index} to be `{}` as before, found `{}`",
                        lex::show(&other),
                        lex::show(name)
                    ),
                ))
            }
            None => {
                ifs.push(new_interface(index, name, link, cur.loc(idx_word.col)));
                Ok(ifs.len().saturating_sub(1))
            }
        };
    }
    if let Some(i) = existing {
        if let Some(f) = ifs.get(i) {
            return Err(cur.err(
                Some(idx_word),
                format!("interface {index} is listed twice (`{}` at line {})", lex::show(&f.name), f.loc.line),
            ));
        }
    }
    let mut iface = new_interface(index, name, link, cur.loc(idx_word.col));
    if let Some(fw) = cur.next() {
        let inner = fw.text.strip_prefix('<').and_then(|s| s.strip_suffix('>')).ok_or_else(|| {
            cur.err(Some(fw), format!("expected interface flags `<FLAG,...>`, found {}", lex::found(Some(fw))))
        })?;
        iface.flags = inner.split(',').filter(|f| !f.is_empty()).map(str::to_string).collect();
    }
    while let Some(w) = cur.next() {
        match w.text {
            "mtu" => iface.mtu = Some(cur.typed(w, "an MTU", lex::dec)?),
            "state" => iface.state = Some(cur.value(w, "a state")?.text.to_string()),
            k if HEADER_VALUED.contains(&k) => {
                cur.value(w, "a value")?;
            }
            k if k.starts_with("xdp") => {}
            _ => {
                return Err(cur.err(
                    Some(w),
                    format!(
                        "expected an interface attribute (mtu, qdisc, master, state, mode, group, qlen), found {}",
                        lex::found(Some(w))
                    ),
                ))
            }
        }
    }
    ifs.push(iface);
    Ok(ifs.len().saturating_sub(1))
}

fn new_interface(index: u32, name: &str, link: Option<String>, loc: crate::Loc) -> Interface {
    Interface {
        index,
        name: name.to_string(),
        link,
        flags: Vec::new(),
        mtu: None,
        state: None,
        link_type: None,
        link_addr: None,
        link_netns: None,
        kind: None,
        vxlan: None,
        addrs: Vec::new(),
        loc,
    }
}

/// A `link/KIND` line; true when it carries `ip -d` details (`promiscuity`).
fn link(cur: &mut Cursor<'_, '_>, first: Word<'_>, iface: &mut Interface) -> Result<bool, ParseError> {
    iface.link_type = first.text.strip_prefix("link/").map(str::to_string);
    const KEYS: &[&str] = &["brd", "peer", "link-netns", "link-netnsid", "permaddr", "promiscuity"];
    if let Some(w) = cur.peek() {
        if !KEYS.contains(&w.text) {
            cur.next();
            iface.link_addr = Some(w.text.to_string());
        }
    }
    while let Some(w) = cur.next() {
        match w.text {
            "brd" | "peer" | "permaddr" => {
                cur.value(w, "an address")?;
            }
            "link-netns" | "link-netnsid" => iface.link_netns = Some(cur.value(w, "a namespace")?.text.to_string()),
            // `ip -d`: the rest of the line are details natpath does not need.
            "promiscuity" => {
                cur.rest();
                return Ok(true);
            }
            _ => {
                return Err(cur.err(
                    Some(w),
                    format!(
                        "expected a link attribute (brd, peer, link-netns, link-netnsid), found {}",
                        lex::found(Some(w))
                    ),
                ))
            }
        }
    }
    Ok(false)
}

/// The first `ip -d` detail line: the device kind, and for `vxlan` its
/// parameters.
fn kind(cur: &mut Cursor<'_, '_>, first: Word<'_>, iface: &mut Interface) -> Result<(), ParseError> {
    if !first.text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(cur.err(
            Some(first),
            format!("expected a device kind (`vxlan`, `ipip`, `veth`...), found {}", lex::found(Some(first))),
        ));
    }
    iface.kind = Some(first.text.to_string());
    if first.text != "vxlan" {
        return Ok(());
    }
    let mut v = Vxlan { vni: 0, local: None, remote: None, group: None, dev: None, dstport: 8472, learning: true };
    let mut have_id = false;
    let addr = |cur: &mut Cursor<'_, '_>, key: Word<'_>| -> Result<Option<std::net::Ipv4Addr>, ParseError> {
        let w = cur.value(key, "an address")?;
        if w.text.contains(':') || w.text == "any" {
            return Ok(None);
        }
        lex::ipv4(w.text).map(Some).ok_or_else(|| {
            cur.err(Some(w), format!("expected an IPv4 address after `{}`, found {}", key.text, lex::found(Some(w))))
        })
    };
    while let Some(w) = cur.next() {
        match w.text {
            "id" => {
                v.vni = cur.typed(w, "a VXLAN id", lex::dec)?;
                have_id = true;
            }
            "local" => v.local = addr(cur, w)?,
            "remote" => v.remote = addr(cur, w)?,
            "group" => v.group = addr(cur, w)?,
            "dev" => v.dev = Some(cur.value(w, "a device name")?.text.to_string()),
            "dstport" => v.dstport = cur.typed(w, "a UDP port", lex::dec)?,
            "nolearning" => v.learning = false,
            "learning" => v.learning = true,
            _ => {}
        }
    }
    if !have_id {
        return Err(cur.err(None, "expected `id N` in the vxlan details, found the end of the line"));
    }
    iface.vxlan = Some(v);
    Ok(())
}

/// An `inet` line (after the `inet` word).
fn inet(cur: &mut Cursor<'_, '_>, key: Word<'_>, iface: &mut Interface) -> Result<(), ParseError> {
    let aw = cur.value(key, "an IPv4 address with prefix length")?;
    let bad = |cur: &Cursor<'_, '_>, w: Word<'_>| {
        cur.err(
            Some(w),
            format!("expected an IPv4 address with prefix length after `inet`, found {}", lex::found(Some(w))),
        )
    };
    let mut addr = lex::prefix(aw.text).ok_or_else(|| bad(cur, aw))?;
    let has_len = aw.text.contains('/');
    let mut a = IfAddr {
        addr,
        peer: None,
        broadcast: None,
        scope: Scope::Global,
        secondary: false,
        noprefixroute: false,
        label: None,
        loc: cur.loc(key.col),
    };
    let mut label: Option<Word<'_>> = None;
    while let Some(w) = cur.next() {
        if let Some(l) = label {
            // The label is the last word; anything after it is unknown.
            return Err(cur.err(
                Some(l),
                format!(
                    "expected an address attribute (peer, brd, scope, metric, a flag, then the label), found {}",
                    lex::found(Some(l))
                ),
            ));
        }
        match w.text {
            "peer" => {
                let pw = cur.value(w, "a peer address")?;
                let p = lex::prefix(pw.text).ok_or_else(|| {
                    cur.err(
                        Some(pw),
                        format!(
                            "expected a peer address with prefix length after `peer`, found {}",
                            lex::found(Some(pw))
                        ),
                    )
                })?;
                if !has_len {
                    // The kernel's prefix length belongs to the peer; the
                    // local address shares it (ifa_mask).
                    addr = ipnet::Ipv4Net::new(addr.addr(), p.prefix_len()).unwrap_or(addr);
                    a.addr = addr;
                }
                a.peer = Some(p);
            }
            "brd" => a.broadcast = Some(cur.typed(w, "a broadcast address", lex::ipv4)?),
            "scope" => a.scope = cur.typed(w, "a scope (global, site, link, host, nowhere or a number)", lex::scope)?,
            "metric" => {
                cur.typed(w, "a metric", lex::dec::<u32>)?;
            }
            "proto" => {
                cur.value(w, "an address protocol")?;
            }
            "valid_lft" | "preferred_lft" => {
                cur.value(w, "a lifetime")?;
            }
            "secondary" => a.secondary = true,
            "noprefixroute" => a.noprefixroute = true,
            f if ADDR_FLAGS.contains(&f) => {}
            _ => label = Some(w),
        }
    }
    if let Some(l) = label {
        if l.text != iface.name {
            a.label = Some(l.text.to_string());
        }
    }
    iface.addrs.push(a);
    Ok(())
}

/// Neighbour states `ip neigh` prints (ip/ipneigh.c `nud_state_n2a`) and its flags.
const NUD: &[&str] = &["INCOMPLETE", "REACHABLE", "STALE", "DELAY", "PROBE", "FAILED", "NOARP", "PERMANENT", "NONE"];

/// Parse `ip neigh show` output; IPv6 entries are skipped.
///
/// Rejects, with the line and column: a first word that is not an address,
/// an entry without `dev`, an unknown attribute or state, and a value
/// missing at the end of the line.
pub fn parse_neigh(text: &str, file: &str) -> Result<Vec<Neighbor>, ParseErrors> {
    let file: Arc<str> = Arc::from(file);
    let mut out = Vec::new();
    let mut errs = ParseErrors::default();
    for (n, line) in lex::lines(text) {
        let words = lex::words_before_comment(line);
        let Some(first) = words.first().copied() else { continue };
        let mut cur = Cursor::new(words, &file, n);
        cur.next();
        if first.text.contains(':') {
            continue;
        }
        let r = (|| {
            let addr = lex::ipv4(first.text).ok_or_else(|| {
                cur.err(Some(first), format!("expected a neighbour's IPv4 address, found {}", lex::found(Some(first))))
            })?;
            let mut e = Neighbor {
                addr,
                dev: String::new(),
                lladdr: None,
                router: false,
                state: Vec::new(),
                loc: cur.loc(first.col),
            };
            while let Some(w) = cur.next() {
                match w.text {
                    "dev" => e.dev = cur.value(w, "a device name")?.text.to_string(),
                    "lladdr" => e.lladdr = Some(cur.value(w, "a link-layer address")?.text.to_string()),
                    "router" => e.router = true,
                    "proxy" | "extern_learn" | "offload" | "managed" => e.state.push(w.text.to_string()),
                    "used" | "probes" | "proto" | "vrf" => {
                        cur.value(w, "a value")?;
                    }
                    s if NUD.contains(&s) => e.state.push(s.to_string()),
                    _ => {
                        return Err(cur.err(
                            Some(w),
                            format!("expected a neighbour attribute (dev, lladdr, router) or state (REACHABLE, STALE, PERMANENT...), found {}", lex::found(Some(w))),
                        ))
                    }
                }
            }
            if e.dev.is_empty() {
                return Err(cur.err(None, "expected `dev NAME` in the neighbour entry, found the end of the line"));
            }
            Ok(e)
        })();
        match r {
            Ok(e) => out.push(e),
            Err(e) => errs.push(e),
        }
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(errs)
    }
}

fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6 && parts.iter().all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Parse `bridge fdb show` output; entries with an IPv6 `dst` keep no `dst`.
///
/// Rejects, with the line and column: a first word that is not a MAC
/// address, an entry without `dev`, a `dst` that is not an address, a bad
/// `vlan` or `vni`, an unknown attribute, and a value missing at the end of
/// the line.
pub fn parse_fdb(text: &str, file: &str) -> Result<Vec<FdbEntry>, ParseErrors> {
    let file: Arc<str> = Arc::from(file);
    let mut out = Vec::new();
    let mut errs = ParseErrors::default();
    const FLAGS: &[&str] = &[
        "self",
        "master",
        "permanent",
        "static",
        "dynamic",
        "extern_learn",
        "offload",
        "sticky",
        "router",
        "local",
        "use",
        "norefresh",
        "locked",
        "blackhole",
    ];
    for (n, line) in lex::lines(text) {
        let words = lex::words_before_comment(line);
        let Some(first) = words.first().copied() else { continue };
        let mut cur = Cursor::new(words, &file, n);
        cur.next();
        let r = (|| {
            if !is_mac(first.text) {
                return Err(cur.err(Some(first), format!("expected a MAC address, found {}", lex::found(Some(first)))));
            }
            let mut e = FdbEntry {
                mac: first.text.to_ascii_lowercase(),
                dev: String::new(),
                dst: None,
                vlan: None,
                vni: None,
                master: None,
                flags: Vec::new(),
                loc: cur.loc(first.col),
            };
            while let Some(w) = cur.next() {
                match w.text {
                    "dev" => e.dev = cur.value(w, "a device name")?.text.to_string(),
                    "dst" => {
                        let d = cur.value(w, "a VTEP address")?;
                        if !d.text.contains(':') {
                            e.dst = Some(lex::ipv4(d.text).ok_or_else(|| {
                                cur.err(
                                    Some(d),
                                    format!("expected a VTEP address after `dst`, found {}", lex::found(Some(d))),
                                )
                            })?);
                        }
                    }
                    "vlan" => e.vlan = Some(cur.typed(w, "a VLAN id", lex::dec)?),
                    "vni" => e.vni = Some(cur.typed(w, "a VXLAN id", lex::dec)?),
                    "master" if cur.peek().is_some_and(|p| !FLAGS.contains(&p.text)) => {
                        e.master = Some(cur.value(w, "a bridge name")?.text.to_string());
                    }
                    "port" | "via" | "src_vni" | "nhid" | "state" => {
                        cur.value(w, "a value")?;
                    }
                    f if FLAGS.contains(&f) => e.flags.push(f.to_string()),
                    _ => {
                        return Err(cur.err(
                            Some(w),
                            format!(
                                "expected an fdb attribute (dev, dst, vlan, vni, master, self, permanent...), found {}",
                                lex::found(Some(w))
                            ),
                        ))
                    }
                }
            }
            if e.dev.is_empty() {
                return Err(cur.err(None, "expected `dev NAME` in the fdb entry, found the end of the line"));
            }
            Ok(e)
        })();
        match r {
            Ok(e) => out.push(e),
            Err(e) => errs.push(e),
        }
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(errs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oneline_merges_by_index() {
        let t = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n\
                 2: eth0    inet 10.0.0.5/24 brd 10.0.0.255 scope global eth0\\       valid_lft forever preferred_lft forever\n\
                 2: eth0    inet 10.0.0.6/24 scope global secondary eth0:1\\       valid_lft forever preferred_lft forever\n\
                 2: eth0    inet6 fe80::1/64 scope link \\       valid_lft forever preferred_lft forever\n";
        let ifs = parse(t, "t").unwrap();
        assert_eq!(ifs.len(), 2);
        assert_eq!(ifs[1].addrs.len(), 2);
        assert!(ifs[1].addrs[1].secondary);
        assert_eq!(ifs[1].addrs[1].label.as_deref(), Some("eth0:1"));
    }

    #[test]
    fn detail_vxlan() {
        let t = "5: vxlan.calico: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UNKNOWN mode DEFAULT group default \n    link/ether 66:4e:2d:44:7a:a0 brd ff:ff:ff:ff:ff:ff promiscuity 0 minmtu 68 maxmtu 65535 \n    vxlan id 4096 local 10.0.0.51 dev ens192 srcport 0 0 dstport 4789 nolearning ttl auto ageing 300 udpcsum noudp6zerocsumtx noudp6zerocsumrx addrgenmode eui64 numtxqueues 1 numrxqueues 1 gso_max_size 65536 gso_max_segs 65535 \n";
        let ifs = parse(t, "t").unwrap();
        assert_eq!(ifs[0].kind.as_deref(), Some("vxlan"));
        let v = ifs[0].vxlan.clone().unwrap();
        assert_eq!((v.vni, v.dstport, v.learning), (4096, 4789, false));
        assert_eq!(v.local, Some("10.0.0.51".parse().unwrap()));
    }
}
