//! natpath-verify: the SMT encoding of the model's semantics, the invariant
//! catalog, counterexamples, the kernel referee, report writers, and the
//! `natpath` command line (in `main.rs`).
//!
//! The data flow continues the model's: IR -> (model | encoding) ->
//! verdicts -> reports.

pub mod counterexample;
pub mod encode;
pub mod invariants;
pub mod kernel;
pub mod report;
pub mod solver;
