//! The rule-change gate: given BEFORE and AFTER (and a contracts file),
//! pass the change when it breaks nothing the team relies on, fail it when
//! it does, with the packet that shows it.
//!
//! A gate fails when an invariant of the catalog newly fails on AFTER (one
//! that already failed on BEFORE is reported, and fails the gate only with
//! `--strict`), when an `[[expect]]` contract does not hold on AFTER for
//! every packet it covers, or when a packet meets another fate (the
//! semantic [`crate::diff`]) in a Service port that no `[[allow]]` entry
//! covers (unless `--allow-changes`). It is unknown, never a pass, when
//! any of these cannot be decided. The contracts format is in
//! docs/contracts.md.
//!
//! Contract: a contracts file with an unknown key, a bad value, or a name
//! (Service, host, node) that neither snapshot has is bad input naming its
//! file and line, and nothing is checked.

use crate::diff::{self, Diff, DiffError};
use crate::encode::walk::{EndKind, Reached};
use crate::encode::{and2, any, not};
use crate::invariants::{self, is_endpoint, listens, CheckOptions, Checker, Outcome, Pins, QAnswer, Verdict};
use natpath_model::intent::Service;
use natpath_model::snapshot::Snapshot;
use serde::{Deserialize, Serialize};
use std::path::Path;
use z3::ast::Bool;

/// The schema name of `natpath gate --format json`.
pub const SCHEMA: &str = "natpath.gate/1";

/// The contracts a team holds every change to (docs/contracts.md).
#[derive(Debug, Clone, Default)]
pub struct Contracts {
    /// The file they were read from.
    pub file: String,
    /// Changes that are meant.
    pub allow: Vec<Allow>,
    /// What must hold on AFTER for every packet.
    pub expect: Vec<Expect>,
    /// How Services must spread new connections over their endpoints on AFTER.
    pub shares: Vec<Shares>,
}

/// A `[[shares]]` entry: every new connection that kube-proxy balances for
/// this Service port on these nodes picks each endpoint with this exact
/// probability.
#[derive(Debug, Clone)]
pub struct Shares {
    /// Its name in reports.
    pub name: String,
    /// The Service port, `namespace/name:port`.
    pub service: String,
    /// The nodes (every node when empty).
    pub nodes: Vec<String>,
    /// The shares: equal, or each endpoint's (`address:port`) own.
    pub split: Split,
    /// Where it was written.
    pub line: usize,
}

/// The spread a `[[shares]]` entry expects.
#[derive(Debug, Clone, PartialEq)]
pub enum Split {
    /// Every endpoint 1/k of the new connections.
    Equal,
    /// Each endpoint (`address:port`) its fraction; together they are every endpoint.
    Exact(Vec<(String, num_rational::Ratio<num_bigint::BigInt>)>),
}

/// An `[[allow]]` entry: the packets of this Service port may change.
#[derive(Debug, Clone)]
pub struct Allow {
    /// The Service port, `namespace/name:port`.
    pub service: String,
    /// Why (shown in the report).
    pub reason: String,
    /// Where it was written.
    pub line: usize,
}

/// What an `[[expect]]` entry demands of the packets it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fate {
    /// Delivered to an endpoint of the Service.
    Delivered,
    /// Dropped silently.
    Dropped,
    /// Rejected (an ICMP error or a reset).
    Rejected,
}

/// What the endpoint must see as the packet's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The client's own address.
    Preserved,
    /// Another address (a node's).
    Masqueraded,
}

/// An `[[expect]]` entry: from a host to a Service's NodePort on some
/// nodes, every first packet meets this fate.
#[derive(Debug, Clone)]
pub struct Expect {
    /// Its name in reports.
    pub name: String,
    /// The sending `[[host]]`.
    pub from: String,
    /// The Service port, `namespace/name:port`.
    pub service: String,
    /// The nodes (every node when empty).
    pub nodes: Vec<String>,
    /// The fate.
    pub fate: Fate,
    /// What the endpoint sees as source, for `delivered`.
    pub source: Option<Source>,
    /// Where it was written.
    pub line: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContracts {
    #[serde(default)]
    allow: Vec<toml::Spanned<RawAllow>>,
    #[serde(default)]
    expect: Vec<toml::Spanned<RawExpect>>,
    #[serde(default)]
    shares: Vec<toml::Spanned<RawShares>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShares {
    name: Option<String>,
    service: String,
    #[serde(default)]
    nodes: Vec<String>,
    split: toml::Value,
}

/// A fraction as a contract writes it: `1/3`, `0.25`, `1`.
fn fraction(text: &str) -> Option<num_rational::Ratio<num_bigint::BigInt>> {
    use num_bigint::BigInt;
    let t = text.trim();
    if let Some((n, d)) = t.split_once('/') {
        let (n, d): (BigInt, BigInt) = (n.trim().parse().ok()?, d.trim().parse().ok()?);
        return (d != BigInt::from(0)).then(|| num_rational::Ratio::new(n, d));
    }
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if !frac.chars().all(|c| c.is_ascii_digit()) || frac.len() > 30 {
        return None;
    }
    let digits: BigInt = format!("{whole}{frac}").parse().ok()?;
    Some(num_rational::Ratio::new(digits, BigInt::from(10u32).pow(u32::try_from(frac.len()).ok()?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAllow {
    service: String,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    name: Option<String>,
    from: String,
    service: String,
    #[serde(default)]
    nodes: Vec<String>,
    fate: String,
    source: Option<String>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len())).map(|t| t.matches('\n').count() + 1).unwrap_or(1)
}

/// The most a contracts file may hold.
const MAX_CONTRACTS_BYTES: usize = 4 * 1024 * 1024;

impl Contracts {
    /// Read a contracts file; errors are `file:line: message`.
    pub fn read(path: &Path) -> Result<Contracts, DiffError> {
        let file = path.display().to_string();
        let bytes = natpath_model::input::read_file(path).map_err(|e| DiffError(e.to_string()))?;
        if bytes.len() > MAX_CONTRACTS_BYTES {
            return Err(DiffError(format!("{file}: a contracts file of more than 4 MiB is not one")));
        }
        let text = String::from_utf8(bytes).map_err(|_| {
            DiffError(format!("{file}:1: expected a TOML contracts file, found bytes that are not UTF-8"))
        })?;
        Contracts::parse(&text, &file)
    }

    /// Parse contracts text read from `file`.
    pub fn parse(text: &str, file: &str) -> Result<Contracts, DiffError> {
        let raw: RawContracts = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
            DiffError(format!("{file}:{line}: {}", e.message().trim_end()))
        })?;
        let mut out = Contracts { file: file.to_string(), ..Contracts::default() };
        for a in raw.allow {
            let line = line_of(text, a.span().start);
            let a = a.into_inner();
            out.allow.push(Allow { service: a.service, reason: a.reason, line });
        }
        for (i, e) in raw.expect.into_iter().enumerate() {
            let line = line_of(text, e.span().start);
            let e = e.into_inner();
            let fate = match e.fate.as_str() {
                "delivered" => Fate::Delivered,
                "dropped" => Fate::Dropped,
                "rejected" => Fate::Rejected,
                f => {
                    return Err(DiffError(format!(
                        "{file}:{line}: expected `delivered`, `dropped` or `rejected` for `fate`, found `{f}`"
                    )))
                }
            };
            let source = match e.source.as_deref() {
                None => None,
                Some("preserved") => Some(Source::Preserved),
                Some("masqueraded") => Some(Source::Masqueraded),
                Some(s) => {
                    return Err(DiffError(format!(
                        "{file}:{line}: expected `preserved` or `masqueraded` for `source`, found `{s}`"
                    )))
                }
            };
            if source.is_some() && fate != Fate::Delivered {
                return Err(DiffError(format!("{file}:{line}: `source` goes with `fate = \"delivered\"` only")));
            }
            out.expect.push(Expect {
                name: e.name.unwrap_or_else(|| format!("expect #{}", i + 1)),
                from: e.from,
                service: e.service,
                nodes: e.nodes,
                fate,
                source,
                line,
            });
        }
        for (i, x) in raw.shares.into_iter().enumerate() {
            let line = line_of(text, x.span().start);
            let x = x.into_inner();
            let bad = || {
                DiffError(format!(
                    "{file}:{line}: expected `split = \"equal\"` or a table of `\"ADDRESS:PORT\" = \"FRACTION\"` \
                     (`1/3`, `0.25`) for `split`"
                ))
            };
            let split = match &x.split {
                toml::Value::String(w) if w == "equal" => Split::Equal,
                toml::Value::Table(t) if !t.is_empty() => {
                    let mut v = Vec::new();
                    for (ep, f) in t {
                        let q = f.as_str().and_then(fraction).ok_or_else(bad)?;
                        v.push((ep.clone(), q));
                    }
                    let one = num_rational::Ratio::from_integer(num_bigint::BigInt::from(1));
                    let sum = v
                        .iter()
                        .fold(num_rational::Ratio::from_integer(num_bigint::BigInt::from(0)), |a, (_, q)| a + q);
                    if sum != one {
                        return Err(DiffError(format!("{file}:{line}: the shares of `split` add up to {sum}, not 1")));
                    }
                    Split::Exact(v)
                }
                _ => return Err(bad()),
            };
            out.shares.push(Shares {
                name: x.name.unwrap_or_else(|| format!("shares #{}", i + 1)),
                service: x.service,
                nodes: x.nodes,
                split,
                line,
            });
        }
        Ok(out)
    }

    /// Check that every name the contracts use exists in a snapshot:
    /// Services in either (as the nodes' intents `ib` and `ia` of BEFORE
    /// and AFTER declare them), hosts and nodes in AFTER.
    fn validate(
        &self,
        after: &Snapshot,
        ib: &[natpath_model::intent::Intent],
        ia: &[natpath_model::intent::Intent],
    ) -> Result<(), DiffError> {
        let services = |intents: &[natpath_model::intent::Intent]| -> std::collections::HashSet<String> {
            intents.iter().flat_map(|i| i.services.iter().map(|x| x.name.clone())).collect()
        };
        let (sb, sa) = (services(ib), services(ia));
        let f = &self.file;
        for a in &self.allow {
            if !sb.contains(&a.service) && !sa.contains(&a.service) {
                return Err(DiffError(format!(
                    "{f}:{}: no Service port `{}` in either snapshot (names are `namespace/name:port` as in kube-proxy's comments)",
                    a.line, a.service
                )));
            }
        }
        for e in &self.expect {
            if !sa.contains(&e.service) {
                return Err(DiffError(format!(
                    "{f}:{}: no Service port `{}` in the AFTER snapshot",
                    e.line, e.service
                )));
            }
            if !after.cluster.hosts.iter().any(|h| h.name == e.from) {
                return Err(DiffError(format!("{f}:{}: no [[host]] `{}` in the AFTER snapshot", e.line, e.from)));
            }
            for n in &e.nodes {
                if after.node(n).is_none() {
                    return Err(DiffError(format!("{f}:{}: no node `{n}` in the AFTER snapshot", e.line)));
                }
            }
        }
        for x in &self.shares {
            if !sa.contains(&x.service) {
                return Err(DiffError(format!(
                    "{f}:{}: no Service port `{}` in the AFTER snapshot",
                    x.line, x.service
                )));
            }
            for n in &x.nodes {
                if after.node(n).is_none() {
                    return Err(DiffError(format!("{f}:{}: no node `{n}` in the AFTER snapshot", x.line)));
                }
            }
        }
        Ok(())
    }
}

/// Check one `[[shares]]` on AFTER: on each of its nodes, the exact share
/// of new connections the Service's chain gives each endpoint (the random
/// draws' probabilities multiplied out as rationals, as `fair-balancing`
/// does), against the contract's, to within 10^-9 (kube-proxy writes each
/// probability with ten decimals).
fn check_shares(c: &Checker<'_>, x: &Shares) -> ContractResult {
    use crate::invariants::fair_balancing;
    let mut res = ContractResult { name: x.name.clone(), line: x.line, verdict: "holds", detail: None };
    // Each node's intent, as the checker already read it.
    let nodes = c.snap.nodes.iter().zip(c.intents.iter());
    for (node, intent) in nodes.filter(|(n, _)| x.nodes.is_empty() || x.nodes.contains(&n.name)) {
        let Some(svc) = intent.services.iter().find(|s| s.name == x.service) else { continue };
        let chain = svc.svc_chain.as_ref().and_then(|c| {
            node.ruleset.table(natpath_model::ruleset::TableName::Nat)?.chains.iter().find(|k| &k.name == c)
        });
        let Some(chain) = chain else {
            res.verdict = "violated";
            res.detail = Some(format!("{}: {} has no endpoint chain: no endpoint gets a share", node.name, x.service));
            return res;
        };
        let (per, _) = match fair_balancing::shares(chain) {
            Ok(p) => p,
            Err(why) => {
                res.verdict = "unknown";
                res.detail = Some(format!("{}: {why}", node.name));
                return res;
            }
        };
        let got: Vec<(String, num_rational::Ratio<num_bigint::BigInt>)> = per
            .iter()
            .map(|(sep, q)| {
                let ep = svc.endpoints.iter().find(|e| &e.chain == sep);
                (ep.map_or_else(|| sep.clone(), |e| format!("{}:{}", e.address, e.port)), q.clone())
            })
            .collect();
        let want: Vec<(String, num_rational::Ratio<num_bigint::BigInt>)> = match &x.split {
            Split::Equal => {
                let k = num_bigint::BigInt::from(got.len().max(1));
                got.iter()
                    .map(|(e, _)| (e.clone(), num_rational::Ratio::new(num_bigint::BigInt::from(1), k.clone())))
                    .collect()
            }
            Split::Exact(v) => v.clone(),
        };
        let close = |a: &num_rational::Ratio<num_bigint::BigInt>, b: &num_rational::Ratio<num_bigint::BigInt>| {
            let d = a - b;
            let d = if d < num_rational::Ratio::from_integer(num_bigint::BigInt::from(0)) { -d } else { d };
            d <= num_rational::Ratio::new(num_bigint::BigInt::from(1), num_bigint::BigInt::from(1_000_000_000u64))
        };
        let shown = |v: &[(String, num_rational::Ratio<num_bigint::BigInt>)]| {
            v.iter().map(|(e, q)| format!("{e} {q}")).collect::<Vec<_>>().join(", ")
        };
        let same = got.len() == want.len() && want.iter().all(|(e, q)| got.iter().any(|(g, r)| g == e && close(q, r)));
        if got.is_empty() || !same {
            res.verdict = "violated";
            res.detail = Some(format!(
                "{}: new connections to {} go {}; the contract says {}",
                node.name,
                x.service,
                if got.is_empty() { "to no endpoint".to_string() } else { shown(&got) },
                shown(&want)
            ));
            return res;
        }
    }
    res
}

/// Options of a gate.
#[derive(Debug, Clone, Copy, Default)]
pub struct GateOptions {
    /// Solver options.
    pub check: CheckOptions,
    /// Fail on invariants that already failed on BEFORE too (checks the
    /// whole snapshots, as `whole` does).
    pub strict: bool,
    /// Check the invariants on the whole of both snapshots, not only on the
    /// slices the change can reach ([`crate::delta`]), so that failures
    /// that were already there are reported (they pass without `strict`).
    pub whole: bool,
    /// Accept every difference (contracts and invariants still count).
    pub allow_changes: bool,
    /// The diff also compares pods and nodes reaching cluster IPs (experimental,
    /// see [`diff::DiffOptions::pods`]).
    pub pods: bool,
    /// Pass a gate with nothing in scope on a side (`--allow-empty`);
    /// otherwise such a pass is unknown ([`Gate::nothing_in_scope`]).
    pub allow_empty: bool,
}

/// An invariant on both sides.
#[derive(Debug, Clone, Serialize)]
pub struct InvariantResult {
    /// Its catalog name.
    pub invariant: &'static str,
    /// `holds`, `violated` or `unknown` on BEFORE.
    pub before: &'static str,
    /// On AFTER.
    pub after: &'static str,
    /// It decides the gate: `fail`, `unknown`, or `pass`.
    pub gate: &'static str,
    /// What `before` and `after` are verdicts on: `touched`, the queries
    /// whose packets can meet a rule the change made differ (the default),
    /// or `whole`, every query (`--strict`).
    pub scope: &'static str,
    /// Queries not asked on each side because their packets meet the same
    /// rules on both (0 with `--strict`).
    pub same: usize,
    /// The AFTER violation's summary, or why it is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The rules the AFTER counterexample went through (`FILE:LINE ...`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
}

/// An `[[expect]]` contract's result on AFTER.
#[derive(Debug, Clone, Serialize)]
pub struct ContractResult {
    /// Its name.
    pub name: String,
    /// The line of the contracts file it was written at.
    pub line: usize,
    /// `holds`, `violated` or `unknown`.
    pub verdict: &'static str,
    /// The packet that breaks it and what happens to it, or why unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A change of the diff and whether an `[[allow]]` covers it.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeResult {
    /// Index in `diff.changes`.
    pub change: usize,
    /// The line of the `[[allow]]` that covers it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_by: Option<usize>,
    /// `pass` (allowed) or `fail`.
    pub gate: &'static str,
}

/// The gate's answer.
#[derive(Debug, Clone, Serialize)]
pub struct Gate {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// `pass`, `fail` or `unknown`.
    pub verdict: &'static str,
    /// The exit code: 0 pass, 1 fail, 3 unknown.
    pub exit: i32,
    /// Why a side has nothing in scope, when one has (the diff's
    /// [`Diff::nothing_in_scope`]): a pass then checked nothing, and is
    /// unknown unless `--allow-empty`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nothing_in_scope: Option<String>,
    /// The contracts file, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contracts_file: Option<String>,
    /// `--strict`.
    pub strict: bool,
    /// `--allow-changes`.
    pub allow_changes: bool,
    /// Every invariant of the catalog on both sides.
    pub invariants: Vec<InvariantResult>,
    /// Every `[[expect]]` contract.
    pub contracts: Vec<ContractResult>,
    /// Every change of the diff and what the gate made of it.
    pub changes: Vec<ChangeResult>,
    /// The semantic diff.
    pub diff: Diff,
}

fn word(o: &Outcome) -> &'static str {
    o.word()
}

/// Run the gate.
pub fn gate(
    before: &Snapshot,
    after: &Snapshot,
    names: (&str, &str),
    contracts: Option<&Contracts>,
    opts: &GateOptions,
    progress: &(dyn Fn(usize, usize, &str) + Sync),
) -> Result<Gate, DiffError> {
    let dopts = diff::DiffOptions {
        check: opts.check,
        pods: opts.pods,
        allow_empty: opts.allow_empty,
        ..diff::DiffOptions::default()
    };
    // What the change can touch, found once: the diff encodes only those
    // entries, and (unless `--strict` asks for the whole snapshots) the
    // invariants are checked on those slices only, on both sides. Every
    // other query meets the same rules on both sides, so the change cannot
    // make it fail.
    // Both sides are prepared while the difference is found: three
    // linear passes of about the same size, none waiting for another.
    let (pb, pa, delta) = std::thread::scope(|sc| {
        let pb = sc.spawn(|| invariants::Prepared::new(before, &opts.check));
        let pa = sc.spawn(|| invariants::Prepared::new(after, &opts.check));
        let delta = crate::delta::Delta::new(before, after);
        (pb.join(), pa.join(), delta)
    });
    let pb = pb.map_err(|_| DiffError("BUG: reading BEFORE failed".into()))?;
    let pa = pa.map_err(|_| DiffError("BUG: reading AFTER failed".into()))?;
    // The contracts' names, against the intents just read (a 10,000-Service
    // node's intent costs a tenth of a second to read again).
    if let Some(c) = contracts {
        c.validate(after, pb.intents(), pa.intents())?;
    }
    let d = diff::diff_using(before, after, names, &dopts, Some(&delta), Some((&pb, &pa)), progress)?;
    let touched = (!opts.strict && !opts.whole).then_some(&delta);
    let none = |_: usize, _: usize, _: &str| {};
    let vb = invariants::check_prepared(before, &invariants::NAMES, &opts.check, touched, Some(&pb), &none);
    let va = invariants::check_prepared(after, &invariants::NAMES, &opts.check, touched, Some(&pa), &none);
    let mut inv = Vec::new();
    for a in &va {
        let b = vb.iter().find(|b| b.name == a.name);
        let before_word = b.map(|b| word(&b.outcome)).unwrap_or("unknown");
        let failing = !matches!(a.outcome, Outcome::Holds);
        let was_failing = before_word != "holds";
        let gate = match (&a.outcome, failing && (opts.strict || !was_failing)) {
            (_, false) => "pass",
            (Outcome::Violated(_), true) => "fail",
            _ => "unknown",
        };
        inv.push(invariant_result(a, before_word, gate, touched.is_some()));
    }
    let mut results = Vec::new();
    if let Some(c) = contracts {
        // AFTER as the checks above prepared it, not read again.
        let mut checker = Checker::with(after, &opts.check, &pa);
        for e in &c.expect {
            results.push(check_expect(&mut checker, after, e));
        }
        for x in &c.shares {
            results.push(check_shares(&checker, x));
        }
    }
    let changes: Vec<ChangeResult> = d
        .changes
        .iter()
        .enumerate()
        .map(|(i, ch)| {
            let allowed_by = contracts.and_then(|c| {
                c.allow.iter().find(|a| ch.service.as_deref() == Some(a.service.as_str())).map(|a| a.line)
            });
            let gate = if allowed_by.is_some() || opts.allow_changes { "pass" } else { "fail" };
            ChangeResult { change: i, allowed_by, gate }
        })
        .collect();
    let fail = inv.iter().any(|r| r.gate == "fail")
        || results.iter().any(|r| r.verdict == "violated")
        || changes.iter().any(|c| c.gate == "fail");
    let unknown = inv.iter().any(|r| r.gate == "unknown")
        || results.iter().any(|r| r.verdict == "unknown")
        || !d.unknown.is_empty();
    let exit = if fail {
        1
    } else if unknown {
        3
    } else {
        0
    };
    // A pass that compared nothing (no Service on a side) is unknown, as
    // `check` decides it.
    let exit = invariants::scope_exit(exit, d.nothing_in_scope.as_deref(), opts.allow_empty);
    let verdict = match exit {
        0 => "pass",
        1 => "fail",
        _ => "unknown",
    };
    Ok(Gate {
        schema: SCHEMA,
        verdict,
        exit,
        nothing_in_scope: d.nothing_in_scope.clone(),
        contracts_file: contracts.map(|c| c.file.clone()),
        strict: opts.strict,
        allow_changes: opts.allow_changes,
        invariants: inv,
        contracts: results,
        changes,
        diff: d,
    })
}

fn invariant_result(a: &Verdict, before: &'static str, gate: &'static str, touched: bool) -> InvariantResult {
    let (detail, rules) = match &a.outcome {
        Outcome::Holds => (None, Vec::new()),
        Outcome::Violated(cx) => (Some(format!("{}: {}", cx.packet, cx.summary)), cx.rules.clone()),
        Outcome::Unknown(why) => (Some(why.clone()), Vec::new()),
    };
    let scope = if touched { "touched" } else { "whole" };
    InvariantResult { invariant: a.name, before, after: word(&a.outcome), gate, scope, same: a.same, detail, rules }
}

/// Check one `[[expect]]` on AFTER for every packet it covers.
fn check_expect(c: &mut Checker<'_>, snap: &Snapshot, e: &Expect) -> ContractResult {
    let mut res = ContractResult { name: e.name.clone(), line: e.line, verdict: "holds", detail: None };
    let Some(h) = snap.cluster.hosts.iter().position(|x| x.name == e.from) else {
        res.verdict = "unknown";
        res.detail = Some(format!("no host `{}`", e.from));
        return res;
    };
    for (n, node) in snap.nodes.iter().enumerate() {
        if !e.nodes.is_empty() && !e.nodes.contains(&node.name) {
            continue;
        }
        let svc: Option<Service> = c.node_ports(n).iter().find(|s| s.name == e.service).cloned();
        let Some(svc) = svc else {
            res.verdict = "violated";
            res.detail = Some(format!("{}: `{}` has no NodePort on this node", node.name, e.service));
            return res;
        };
        let Some(port) = svc.node_port else { continue };
        let Some(q) = c.walk_query(n, h, false, Pins::port(svc.proto, port), |_| Vec::new()) else {
            res.verdict = "unknown";
            res.detail = Some(format!("{}: the walk cannot be encoded", node.name));
            return res;
        };
        let host_addr = crate::encode::packet::addr(
            snap.cluster.hosts.get(h).map(|x| x.address.addr()).unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
        );
        let mut eps = svc.endpoints.clone();
        eps.extend(svc.local_endpoints.iter().cloned());
        let mut bad: Vec<(Bool, String)> = Vec::new();
        let mut unknown = Vec::new();
        for end in &q.fwd.ends {
            let ok = match (&end.kind, e.fate) {
                // Beyond the snapshot, as in `trace`: unknown.
                (EndKind::Unknown | EndKind::Elsewhere { .. }, _) => {
                    unknown.push(crate::encode::Ending { cond: end.cond.clone(), reason: end.reason.clone() });
                    continue;
                }
                (EndKind::Reached(Reached::Pod(pi)), Fate::Delivered) => {
                    let l = snap
                        .cluster
                        .pods
                        .get(*pi)
                        .map(|p| listens(p, &end.state.pkt))
                        .unwrap_or(Bool::from_bool(false));
                    and2(&is_endpoint(&end.state.pkt.dst, &end.state.pkt.dport, &eps), &l)
                }
                (EndKind::Reached(Reached::Node(_)), Fate::Delivered) => {
                    is_endpoint(&end.state.pkt.dst, &end.state.pkt.dport, &eps)
                }
                (EndKind::Dropped, Fate::Dropped) | (EndKind::Rejected, Fate::Rejected) => Bool::from_bool(true),
                _ => Bool::from_bool(false),
            };
            use crate::encode::packet::FoldEq;
            let ok = match e.source {
                Some(Source::Preserved) => and2(&ok, &end.state.pkt.src.feq(&host_addr)),
                Some(Source::Masqueraded) => and2(&ok, &not(&end.state.pkt.src.feq(&host_addr))),
                None => ok,
            };
            let words = match &end.kind {
                EndKind::Reached(_) => {
                    "delivered, but not as the contract says (another endpoint or source)".to_string()
                }
                EndKind::Dropped => format!("dropped: {}", end.reason),
                EndKind::Rejected => format!("rejected: {}", end.reason),
                EndKind::Elsewhere { dev, .. } => format!("left by {dev}, beyond the snapshot"),
                EndKind::Loop => "a loop".into(),
                EndKind::Unknown => "unknown".into(),
            };
            bad.push((and2(&end.cond, &not(&ok)), words));
        }
        let violation = any(&bad.iter().map(|(b, _)| b.clone()).collect::<Vec<_>>());
        match c.ask(&q.scope, &violation, &unknown) {
            QAnswer::Holds => {}
            QAnswer::Unknown(why) => {
                res.verdict = "unknown";
                res.detail = Some(format!("{}: {why}", node.name));
            }
            QAnswer::Violated(w) => {
                // The packet a client would send: from an ephemeral port.
                let w = c.prefer(&q.scope, &violation, &unknown, crate::invariants::ephemeral(&q.pkt), w);
                let words =
                    bad.iter().find(|(b, _)| w.bool(b) == Some(true)).map(|(_, r)| r.clone()).unwrap_or_default();
                let sport = w.u64(&q.pkt.sport).unwrap_or(0);
                let dst = w.u64(&q.pkt.dst).map(|d| std::net::Ipv4Addr::from(d as u32).to_string()).unwrap_or_default();
                res.verdict = "violated";
                res.detail = Some(format!(
                    "{}: {} {}:{sport} -> {dst}:{port} is {words}",
                    node.name,
                    natpath_model::packet::proto_name(svc.proto),
                    e.from
                ));
                return res;
            }
        }
    }
    res
}
