//! `sysctl net.ipv4` (or `sysctl -a`) output into [`Sysctl`]: one
//! `key = value` per line.
//!
//! Contract: never panics on any input; every problem is a [`ParseError`]
//! with file, line and column saying what was expected and what was found,
//! and every line is checked, so all errors of the file are reported. The
//! format is procps `sysctl`'s: the dotted key, ` = `, the value (which may
//! hold tabs, as `net.ipv4.ip_local_port_range`'s does); `key=value`
//! as in sysctl.conf is accepted too. procps' own complaints that land in a
//! paste (`sysctl: permission denied on key ...`, `sysctl: reading key ...`)
//! and `#` comments are skipped. The same key twice with different values
//! is an error (two captures mixed); with the same value it is harmless.
//! So are `net.ipv4.ip_forward` and `net.ipv4.conf.all.forwarding` with
//! different values: they are one setting of the kernel.

use super::iproute::lex;
use crate::error::{ParseError, ParseErrors};
use crate::loc::Loc;
use crate::netstate::Sysctl;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The per-device settings natpath's model reads (`net.ipv4.conf.DEV.NAME`);
/// their values must be integers, and a key one or two letters away from
/// one of them is a misspelling, not a setting the kernel has.
const READ_CONF: [&str; 5] = ["rp_filter", "route_localnet", "src_valid_mark", "accept_local", "forwarding"];

/// Every `net.ipv4.conf.DEV.NAME` the kernel has (net/ipv4/devinet.c), so
/// that a misspelling check never refuses a real key.
const KERNEL_CONF: [&str; 33] = [
    "forwarding",
    "mc_forwarding",
    "proxy_arp",
    "accept_redirects",
    "secure_redirects",
    "send_redirects",
    "shared_media",
    "rp_filter",
    "accept_source_route",
    "bootp_relay",
    "log_martians",
    "tag",
    "arp_filter",
    "medium_id",
    "disable_xfrm",
    "disable_policy",
    "force_igmp_version",
    "arp_announce",
    "arp_ignore",
    "promote_secondaries",
    "arp_accept",
    "arp_notify",
    "accept_local",
    "src_valid_mark",
    "proxy_arp_pvlan",
    "route_localnet",
    "igmpv2_unsolicited_report_interval",
    "igmpv3_unsolicited_report_interval",
    "ignore_routes_with_linkdown",
    "drop_unicast_in_l2_multicast",
    "drop_gratuitous_arp",
    "bc_forwarding",
    "arp_evict_nocarrier",
];

/// Levenshtein distance, for names of at most a few dozen bytes.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row.first().copied().unwrap_or(0);
        if let Some(first) = row.first_mut() {
            *first = i + 1;
        }
        for (j, cb) in b.iter().enumerate() {
            let (Some(&up), Some(&left)) = (row.get(j + 1), row.get(j)) else { break };
            let cost = usize::from(ca != *cb);
            let here = (prev + cost).min(up + 1).min(left + 1);
            prev = up;
            if let Some(cell) = row.get_mut(j + 1) {
                *cell = here;
            }
        }
    }
    row.last().copied().unwrap_or(0)
}

/// Why a key natpath reads cannot be taken as written: a value that is not
/// an integer (`rp_filter = banana` was read as 0), or a misspelled
/// per-device setting (`rp_filtr` was ignored), either of which can flip a
/// verdict.
fn check_read_key(key: &str, value: &str) -> Option<String> {
    let name = match key {
        "net.ipv4.ip_forward" => Some("ip_forward"),
        _ => key.strip_prefix("net.ipv4.conf.").and_then(|rest| rest.rsplit_once('.')).map(|(_, name)| name),
    }?;
    let read = name == "ip_forward" || READ_CONF.contains(&name);
    if read && value.parse::<i64>().is_err() {
        return Some(format!("expected an integer value for `{key}`, found `{}`", lex::show(value)));
    }
    if !read && key != "net.ipv4.ip_forward" && !KERNEL_CONF.contains(&name) {
        if let Some(near) = READ_CONF.iter().find(|r| distance(name, r) <= 2) {
            return Some(format!(
                "`{key}` is no setting the kernel has; expected `{near}` (natpath reads it, and a misspelling would be ignored)"
            ));
        }
    }
    None
}

/// Parse sysctl output.
///
/// Rejects, with the line and column: a line without `=`, a key that is not
/// dotted words (letters, digits, `_`, `-`, `.`, `/`, `@`, `:`), a key
/// given twice with different values (`ip_forward` and
/// `conf.all.forwarding` are one key), a setting natpath reads whose value
/// is not an integer, and a misspelling of one.
pub fn parse(text: &str, file: &str) -> Result<Sysctl, ParseErrors> {
    let file: Arc<str> = Arc::from(file);
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    let mut lines_of: BTreeMap<String, u32> = BTreeMap::new();
    let mut errs = ParseErrors::default();
    for (n, line) in lex::lines(text) {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') || trimmed.starts_with("sysctl: ")
        {
            continue;
        }
        let indent = u32::try_from(line.chars().take_while(|c| c.is_whitespace()).count()).unwrap_or(0);
        let col0 = indent.saturating_add(1);
        let Some((k, v)) = trimmed.split_once('=') else {
            errs.push(ParseError::new(
                Loc::new(&file, n, col0),
                format!("expected `key = value`, found `{}`", lex::show(trimmed)),
            ));
            continue;
        };
        let key = k.trim();
        let valid = !key.is_empty()
            && key.contains('.')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '@' | ':' | '+'));
        if !valid {
            errs.push(ParseError::new(
                Loc::new(&file, n, col0),
                format!("expected a sysctl key such as `net.ipv4.ip_forward` before `=`, found `{}`", lex::show(key)),
            ));
            continue;
        }
        let value = v.trim().to_string();
        if let Some(old) = values.get(key) {
            if *old != value {
                let first = lines_of.get(key).copied().unwrap_or(0);
                errs.push(ParseError::new(
                    Loc::new(&file, n, col0),
                    format!("`{key}` is `{}` here but `{}` at line {first}", lex::show(&value), lex::show(old)),
                ));
            }
            continue;
        }
        if let Some(why) = check_read_key(key, &value) {
            errs.push(ParseError::new(Loc::new(&file, n, col0), why));
            continue;
        }
        lines_of.insert(key.to_string(), n);
        values.insert(key.to_string(), value);
    }
    // `ip_forward` is `conf.all.forwarding` (one variable, devinet.c's
    // `ctl_forward_entry`): a dump cannot give them two values.
    let (ipf, all) = ("net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding");
    if let (Some(a), Some(b)) = (values.get(ipf), values.get(all)) {
        let (la, lb) = (lines_of.get(ipf).copied().unwrap_or(0), lines_of.get(all).copied().unwrap_or(0));
        if a.parse::<i64>().ok() != b.parse::<i64>().ok() {
            let (line, here, other, there, at) = if la > lb { (la, ipf, all, a, lb) } else { (lb, all, ipf, b, la) };
            let then = if la > lb { b } else { a };
            errs.push(ParseError::new(
                Loc::new(&file, line, 1),
                format!(
                    "`{here}` is `{}` here but `{other}` is `{}` at line {at}: the kernel has one setting for both",
                    lex::show(there),
                    lex::show(then)
                ),
            ));
        }
    }
    if errs.is_empty() {
        Ok(Sysctl { values })
    } else {
        Err(errs)
    }
}
