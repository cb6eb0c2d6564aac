//! `cluster.toml`: the hand-written manifest of what no dump can tell
//! (docs/snapshot-format.md): which directory is which node and its LAN interface, the
//! machines outside the cluster, and where each pod lives.
//!
//! Contract: [`parse`] never panics; unknown keys, TOML syntax errors,
//! addresses that do not parse, duplicate names, pods on unknown nodes, a
//! `listen` entry that is not `PROTO/PORT` and a host gateway outside the
//! host's segment are errors naming `cluster.toml`, line and column. The
//! checks that need the dumps (the node directories, the interfaces) are
//! [`crate::snapshot::load`]'s.

use crate::error::{ParseError, ParseErrors};
use crate::loc::Loc;
use ipnet::Ipv4Net;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// A node of the cluster (`[[node]]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeDecl {
    /// The node's name: the directory under `nodes/`.
    pub name: String,
    /// The interface on the segment shared with the other nodes and hosts.
    pub lan: String,
    /// Where the table's `name` is.
    #[serde(skip)]
    pub loc: Loc,
}

/// A machine outside the cluster (`[[host]]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostDecl {
    /// The host's name (what `--from` takes).
    pub name: String,
    /// Its address with the prefix of its segment.
    pub address: Ipv4Net,
    /// Where it sends what is not on its segment.
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    /// Where the table's `name` is.
    #[serde(skip)]
    pub loc: Loc,
}

/// A pod (`[[pod]]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PodDecl {
    /// `namespace/name`.
    pub name: String,
    /// The node it runs on.
    pub node: String,
    /// Its address.
    pub address: Ipv4Addr,
    /// The host side of its veth pair on that node.
    pub iface: String,
    /// Ports it answers on, as `tcp/80`, `udp/53`; empty means every port.
    #[serde(default)]
    pub listen: Vec<String>,
    /// Where the table's `name` is.
    #[serde(skip)]
    pub loc: Loc,
}

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// `[[node]]` tables.
    #[serde(default, rename = "node")]
    pub nodes: Vec<NodeDecl>,
    /// `[[host]]` tables.
    #[serde(default, rename = "host")]
    pub hosts: Vec<HostDecl>,
    /// `[[pod]]` tables.
    #[serde(default, rename = "pod")]
    pub pods: Vec<PodDecl>,
}

/// Where each key of each table was written, for errors found later
/// (a node without a directory, a pod's interface missing on its node).
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyLocs {
    /// Per `[[node]]`, key -> location of its value.
    pub nodes: Vec<BTreeMap<String, Loc>>,
    /// Per `[[host]]`.
    pub hosts: Vec<BTreeMap<String, Loc>>,
    /// Per `[[pod]]`.
    pub pods: Vec<BTreeMap<String, Loc>>,
}

impl KeyLocs {
    /// The location of `key` in table `i` of `tables`, else of its table's name, else line 1.
    pub fn of(tables: &[BTreeMap<String, Loc>], i: usize, key: &str, file: &Arc<str>) -> Loc {
        tables
            .get(i)
            .and_then(|t| t.get(key).or_else(|| t.get("name")))
            .cloned()
            .unwrap_or_else(|| Loc::new(file, 1, 1))
    }
}

/// The same document with every value's span, to locate later errors.
#[derive(serde::Deserialize)]
struct Raw {
    #[serde(default)]
    node: Vec<BTreeMap<String, toml::Spanned<toml::Value>>>,
    #[serde(default)]
    host: Vec<BTreeMap<String, toml::Spanned<toml::Value>>>,
    #[serde(default)]
    pod: Vec<BTreeMap<String, toml::Spanned<toml::Value>>>,
}

/// The line and column of byte `offset` of `text`.
pub(crate) fn loc_at(text: &str, offset: usize, file: &Arc<str>) -> Loc {
    Lines::new(text).loc(offset, file)
}

/// Where each line of a text starts, to turn many byte offsets into lines
/// and columns without reading the text again for each (a `cluster.toml`
/// of a few hundred nodes has tens of thousands of keys).
pub(crate) struct Lines<'t> {
    text: &'t str,
    starts: Vec<usize>,
}

impl<'t> Lines<'t> {
    pub(crate) fn new(text: &'t str) -> Lines<'t> {
        let starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i.saturating_add(1))).collect();
        Lines { text, starts }
    }

    /// The line and column (in characters, both from 1) of byte `offset`.
    pub(crate) fn loc(&self, offset: usize, file: &Arc<str>) -> Loc {
        let offset = offset.min(self.text.len());
        // The lines that start at or before `offset`: at least the first.
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts.get(line.saturating_sub(1)).copied().unwrap_or(0);
        let col = self.text.get(start..offset).map_or(0, |s| s.chars().count()).saturating_add(1);
        Loc::new(file, u32::try_from(line).unwrap_or(u32::MAX), u32::try_from(col).unwrap_or(u32::MAX))
    }
}

/// Parse `cluster.toml` and check what it can check alone.
pub fn parse(text: &str, file: &str) -> Result<Cluster, ParseErrors> {
    parse_with_locs(text, file).map(|(c, _)| c)
}

/// [`parse`], also returning where each key was written.
pub(crate) fn parse_with_locs(text: &str, file: &str) -> Result<(Cluster, KeyLocs), ParseErrors> {
    let file: Arc<str> = Arc::from(file);
    let mut cluster: Cluster = toml::from_str(text).map_err(|e| {
        let loc = e.span().map_or_else(|| Loc::new(&file, 1, 1), |s| loc_at(text, s.start, &file));
        let msg = e.message().trim().replace('\n', "; ");
        ParseError::new(loc, lower_first(&msg))
    })?;
    let raw: Raw =
        toml::from_str(text).map_err(|e| ParseError::new(Loc::new(&file, 1, 1), lower_first(e.message())))?;
    let lines = Lines::new(text);
    let locs = |tables: Vec<BTreeMap<String, toml::Spanned<toml::Value>>>| -> Vec<BTreeMap<String, Loc>> {
        tables
            .into_iter()
            .map(|t| t.into_iter().map(|(k, v)| (k, lines.loc(v.span().start, &file))).collect())
            .collect()
    };
    let keys = KeyLocs { nodes: locs(raw.node), hosts: locs(raw.host), pods: locs(raw.pod) };
    for (i, n) in cluster.nodes.iter_mut().enumerate() {
        n.loc = KeyLocs::of(&keys.nodes, i, "name", &file);
    }
    for (i, h) in cluster.hosts.iter_mut().enumerate() {
        h.loc = KeyLocs::of(&keys.hosts, i, "name", &file);
    }
    for (i, p) in cluster.pods.iter_mut().enumerate() {
        p.loc = KeyLocs::of(&keys.pods, i, "name", &file);
    }
    let mut errs = ParseErrors::default();
    dup(cluster.nodes.iter().map(|n| (&n.name, &n.loc)), "node", &mut errs);
    dup(cluster.hosts.iter().map(|h| (&h.name, &h.loc)), "host", &mut errs);
    dup(cluster.pods.iter().map(|p| (&p.name, &p.loc)), "pod", &mut errs);
    for n in &cluster.nodes {
        if n.name.is_empty() || n.name.contains('/') || n.name == "." || n.name == ".." {
            errs.push(ParseError::new(
                n.loc.clone(),
                format!("expected a node name that is a directory name under nodes/, found `{}`", n.name),
            ));
        }
    }
    for (i, h) in cluster.hosts.iter().enumerate() {
        if let Some(g) = h.gateway {
            if !h.address.contains(&g) {
                errs.push(ParseError::new(
                    KeyLocs::of(&keys.hosts, i, "gateway", &file),
                    format!("expected host `{}`'s gateway on its segment {}, found `{g}`", h.name, h.address.trunc()),
                ));
            }
        }
    }
    let names: Vec<&str> = cluster.nodes.iter().map(|n| n.name.as_str()).collect();
    for (i, p) in cluster.pods.iter().enumerate() {
        if !names.contains(&p.node.as_str()) {
            errs.push(ParseError::new(
                KeyLocs::of(&keys.pods, i, "node", &file),
                format!(
                    "pod `{}` is on node `{}`, which no [[node]] declares (nodes: {})",
                    p.name,
                    p.node,
                    list(&names)
                ),
            ));
        }
        for l in &p.listen {
            let ok = l.split_once('/').is_some_and(|(proto, port)| {
                matches!(proto, "tcp" | "udp" | "sctp")
                    && port.parse::<u16>().is_ok_and(|p| p > 0)
                    && !port.starts_with('+')
            });
            if !ok {
                errs.push(ParseError::new(
                    KeyLocs::of(&keys.pods, i, "listen", &file),
                    format!(
                        "expected `tcp/PORT`, `udp/PORT` or `sctp/PORT` in pod `{}`'s `listen`, found `{l}`",
                        p.name
                    ),
                ));
            }
        }
    }
    if errs.is_empty() {
        Ok((cluster, keys))
    } else {
        Err(errs)
    }
}

fn dup<'a>(items: impl Iterator<Item = (&'a String, &'a Loc)>, what: &str, errs: &mut ParseErrors) {
    let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
    for (name, loc) in items {
        if let Some(first) = seen.get(name.as_str()) {
            errs.push(ParseError::new(
                loc.clone(),
                format!("duplicate {what} `{name}` (first declared at line {first})"),
            ));
        } else {
            seen.insert(name, loc.line);
        }
    }
}

/// `a, b, c`, or `none`.
pub(crate) fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Line and column by reading the text up to `offset`, as the errors
    /// were placed before [`Lines`].
    fn slow(text: &str, offset: usize) -> (u32, u32) {
        let before = &text[..offset.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let start = before.rfind('\n').map_or(0, |i| i + 1);
        (line as u32, before[start..].chars().count() as u32 + 1)
    }

    #[test]
    fn lines_place_every_offset_as_a_scan_of_the_text_does() {
        let file: Arc<str> = Arc::from("cluster.toml");
        for text in ["", "\n", "a", "[[node]]\nname = \"é1\"\n\n  lan = \"eth0\"", "x\n\ny\n"] {
            let lines = Lines::new(text);
            for offset in (0..=text.len() + 2).filter(|&o| o >= text.len() || text.is_char_boundary(o)) {
                let loc = lines.loc(offset, &file);
                assert_eq!((loc.line, loc.column), slow(text, offset), "{text:?} at {offset}");
            }
        }
    }
}
