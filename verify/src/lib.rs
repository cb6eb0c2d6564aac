//! natpath-verify: the SMT encoding of the model's semantics, the invariant
//! catalog, counterexamples, the kernel referee, report writers, and the
//! `natpath` command line ([`cli`]).
//!
//! The data flow continues the model's: IR -> (model | encoding) ->
//! verdicts -> reports.
//!
//! For tests in your own repository, the front door is [`load`], [`trace`]
//! and [`check`] (module [`api`]); `examples/assert_cluster.rs` is a
//! runnable example:
//!
//! ```
//! let snap = natpath_verify::load("../corpus/seed-ipip-local")?;
//! for v in natpath_verify::check_all(&snap) {
//!     assert_eq!(v.outcome.word(), "holds", "{}", v.name);
//! }
//! # Ok::<(), natpath_verify::Error>(())
//! ```

pub mod api;
pub mod cli;
pub mod collect;
pub mod counterexample;
pub mod delta;
pub mod diff;
pub mod encode;
pub mod gate;
pub mod invariants;
pub mod kernel;
pub mod report;
pub mod solver;

pub use api::{check, check_all, load, trace, trace_with, Error};
pub use invariants::{Outcome, Verdict};
pub use natpath_model::snapshot::Snapshot;
pub use natpath_model::trace;
