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
/// one of them (or the same but for case) is a misspelling, not a setting
/// the kernel has.
const READ_CONF: [&str; 7] =
    ["rp_filter", "route_localnet", "src_valid_mark", "accept_local", "forwarding", "send_redirects", "shared_media"];

/// The settings directly under `net.ipv4.` that the model reads, held to
/// the same rules. No other key of the kernel's `net.ipv4.` is within two
/// letters of one of them (`ip_forward_use_pmtu` is nine away), so no list
/// of exceptions is needed as it is for `conf`.
const READ_TOP: [&str; 2] = ["ip_forward", "icmp_errors_use_inbound_ifaddr"];

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

/// Whether `found` is a misspelling of `want`: not the same, but the same
/// ignoring case, or one or two edits away. The edits must leave a letter
/// of the shorter name in place, so that `lo` is not taken for `all`.
fn near(found: &str, want: &str) -> bool {
    if found == want {
        return false;
    }
    let d = distance(found, want);
    found.eq_ignore_ascii_case(want) || (d <= 2 && d < found.chars().count().min(want.chars().count()))
}

/// Whether two device names are one family's numbered devices (`eth0`
/// and `eth1`, `flannel.1` and `flannel.2`): the same but for their
/// digits, so two devices rather than one misspelled.
fn numbered_siblings(a: &str, b: &str) -> bool {
    let letters = |s: &str| s.chars().filter(|c| !c.is_ascii_digit()).collect::<String>();
    letters(a) == letters(b)
}

/// Why a key natpath reads cannot be taken as written: a value that is not
/// an integer (`rp_filter = banana` was read as 0), a misspelled setting
/// (`rp_filtr`, `ip_foward` were ignored), a misspelled subtree (`conff`)
/// or device (`al` for `all`; `tunI0` for the node's `tunl0` when
/// `devices`, the node's ip-addr, is known), any of which can flip a
/// verdict. Keys of other subtrees are not natpath's business.
fn check_key(key: &str, value: &str, devices: Option<&[&str]>) -> Option<String> {
    let rest = key.strip_prefix("net.ipv4.")?;
    match rest.split_once('.') {
        None => check_setting(key, rest, value, &READ_TOP, &[]),
        Some(("conf", tail)) => {
            let (dev, name) = tail.rsplit_once('.')?;
            check_setting(key, name, value, &READ_CONF, &KERNEL_CONF).or_else(|| check_device(key, dev, devices))
        }
        Some((sub, _)) if near(sub, "conf") => Some(format!(
            "`{key}` is no setting the kernel has: expected `net.ipv4.conf.` before the device, found `net.ipv4.{sub}.` (a misspelling would be ignored)"
        )),
        Some(_) => None,
    }
}

/// The setting `name` of `key`, among the ones natpath reads (`read`) and
/// the real ones near them (`kernel`): a value that is not an integer, or
/// a name that is not the kernel's and is near one natpath reads.
fn check_setting(key: &str, name: &str, value: &str, read: &[&str], kernel: &[&str]) -> Option<String> {
    if read.contains(&name) {
        return value
            .parse::<i64>()
            .is_err()
            .then(|| format!("expected an integer value for `{key}`, found `{}`", lex::show(value)));
    }
    if kernel.contains(&name) {
        return None;
    }
    read.iter().find(|r| near(name, r)).map(|r| {
        format!("`{key}` is no setting the kernel has; expected `{r}` (natpath reads it, and a misspelling would be ignored)")
    })
}

/// The device of a `net.ipv4.conf.DEV.` key (`sysctl` prints a `.` in its
/// name as `/`): `all`, `default`, one of `devices`, or a name that is
/// near none of them. A device the node does not have and that is near
/// nothing is accepted without a note: pods come and go between the
/// captures of `sysctl` and `ip addr`, their veths with them, and the
/// model never reads the settings of a device ip-addr does not list; a
/// note on every such capture would be noise. Names that differ only in
/// their digits (`eth1` beside `eth0`) are two devices of one kind, one
/// of them down or gone, more often than a typo, which changes a letter.
fn check_device(key: &str, dev: &str, devices: Option<&[&str]>) -> Option<String> {
    let dev = dev.replace('/', ".");
    let known = devices.unwrap_or_default();
    if dev == "all" || dev == "default" || known.contains(&dev.as_str()) {
        return None;
    }
    let meant = ["all", "default"].iter().chain(known).find(|d| near(&dev, d) && !numbered_siblings(&dev, d))?;
    let whose =
        if devices.is_some() && !["all", "default"].contains(meant) { ", which ip-addr does not list" } else { "" };
    Some(format!(
        "`{key}` names device `{dev}`{whose}; expected `{meant}` (a misspelled device's settings would be ignored)"
    ))
}

/// Parse sysctl output.
///
/// Rejects, with the line and column: a line without `=`, a key that is not
/// dotted words (letters, digits, `_`, `-`, `.`, `/`, `@`, `:`), a key
/// given twice with different values (`ip_forward` and
/// `conf.all.forwarding` are one key), a setting natpath reads whose value
/// is not an integer, and a misspelling of one (of its name, of `conf`, or
/// of `all` and `default`).
pub fn parse(text: &str, file: &str) -> Result<Sysctl, ParseErrors> {
    parse_inner(text, file, None)
}

/// [`parse`] for a node whose devices (ip-addr's) are known: a device of a
/// `net.ipv4.conf.` key that is not one of them but near one (`tunI0`,
/// `TUNL0` for `tunl0`) is a misspelling too.
pub fn parse_for_node(text: &str, file: &str, devices: &[&str]) -> Result<Sysctl, ParseErrors> {
    parse_inner(text, file, Some(devices))
}

fn parse_inner(text: &str, file: &str, devices: Option<&[&str]>) -> Result<Sysctl, ParseErrors> {
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
        if let Some(why) = check_key(key, &value, devices) {
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
