//! The library's front door, for `cargo test` suites in your own
//! repository: load a snapshot, trace a packet, check an invariant, and
//! assert on the result. Everything here is a thin layer over
//! [`natpath_model`] and [`crate::invariants`], which stay available for
//! finer control.
//!
//! ```
//! use natpath_verify::{check, load, trace, Outcome};
//! use natpath_verify::trace::Outcome as Fate;
//!
//! // The blog's case B: the only nginx pod runs on node2.
//! let snap = load("../corpus/seed-ipip-remote")?;
//!
//! let t = trace(&snap, "client", "10.0.0.51:32220")?;
//! let b = &t.branches[0];
//! assert_eq!(b.outcome, Fate::Delivered);
//! assert_eq!(b.delivered_to.as_ref().map(|d| d.node.as_deref()), Some(Some("node2")));
//! // node1 masqueraded to its tunl0 address; the reply came back from the NodePort.
//! assert_eq!(b.seen_by_destination.as_ref().unwrap().src, "192.168.231.64:40000");
//! assert_eq!(b.reply.as_ref().unwrap().seen_by_client.as_ref().unwrap().src, "10.0.0.51:32220");
//!
//! let v = check(&snap, "masq-iff-mark")?;
//! assert!(matches!(v.outcome, Outcome::Holds), "{}", v.outcome.word());
//! # Ok::<(), natpath_verify::Error>(())
//! ```
//!
//! Contract: bad input is an [`Error`] whose message names the file and
//! line, as on the command line; an invariant that natpath cannot decide is
//! [`Outcome::Unknown`], never [`Outcome::Holds`].

use crate::invariants::{self, CheckOptions, Verdict};
use natpath_model::ruleset::Proto;
use natpath_model::snapshot::Snapshot;
use natpath_model::trace::Trace;
use natpath_model::walk::{self, TraceOptions};
use std::fmt;
use std::path::Path;

/// Why a library call could not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The snapshot does not load: every problem, each as `file:line:col: message`.
    Snapshot(String),
    /// The probe names a sender or destination the snapshot does not have,
    /// or the walk cannot start.
    Trace(String),
    /// No invariant of the catalog has this name.
    UnknownInvariant(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Snapshot(m) | Error::Trace(m) => f.write_str(m),
            Error::UnknownInvariant(n) => {
                write!(f, "unknown invariant `{n}`; the catalog has {}", invariants::NAMES.join(", "))
            }
        }
    }
}

impl std::error::Error for Error {}

/// Load the snapshot directory at `dir` (the format is in docs/snapshot-format.md).
pub fn load(dir: impl AsRef<Path>) -> Result<Snapshot, Error> {
    natpath_model::snapshot::load(dir.as_ref()).map_err(|e| Error::Snapshot(e.to_string()))
}

/// Trace a TCP SYN from `from` (a host, pod or node of the snapshot),
/// source port 40000, to `to` (`IP:PORT`), every random branch included.
pub fn trace(snap: &Snapshot, from: &str, to: &str) -> Result<Trace, Error> {
    trace_with(snap, from, to, Proto::TCP, 40000, &TraceOptions::default())
}

/// [`trace`] with the protocol, source port and options given.
pub fn trace_with(
    snap: &Snapshot,
    from: &str,
    to: &str,
    proto: Proto,
    sport: u16,
    opts: &TraceOptions,
) -> Result<Trace, Error> {
    let probe = walk::probe(snap, from, to, proto, sport).map_err(|e| Error::Trace(e.0))?;
    walk::trace(snap, &probe, opts).map_err(|e| Error::Trace(e.0))
}

/// Check one invariant of the catalog (docs/invariants.md) for every packet
/// in its scope, with the default options (30 s per solver query).
pub fn check(snap: &Snapshot, invariant: &str) -> Result<Verdict, Error> {
    invariants::check(snap, invariant, &CheckOptions::default())
        .ok_or_else(|| Error::UnknownInvariant(invariant.to_string()))
}

/// Check the whole catalog, on every core; the verdicts in catalog order.
pub fn check_all(snap: &Snapshot) -> Vec<Verdict> {
    invariants::check_all(snap, &CheckOptions::default())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]
    use super::*;

    #[test]
    fn errors_name_what_is_wrong() {
        let snap = load("../corpus/seed-ipip-remote").unwrap();
        assert_eq!(
            check(&snap, "masq-if-mark").unwrap_err().to_string(),
            format!("unknown invariant `masq-if-mark`; the catalog has {}", invariants::NAMES.join(", "))
        );
        assert!(matches!(trace(&snap, "laptop", "10.0.0.51:32220"), Err(Error::Trace(m)) if m.contains("laptop")));
        assert!(matches!(load("/nonexistent/natpath"), Err(Error::Snapshot(m)) if m.contains("cluster.toml")));
    }
}
