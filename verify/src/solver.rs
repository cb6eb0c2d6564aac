//! The one place natpath asks Z3 for an answer: a session over a set of
//! assertions, checked with a timeout, whose answer is one of three.
//!
//! Contract: Z3's `sat`, `unsat` and `unknown` map one to one to
//! [`Answer::Sat`], [`Answer::Unsat`] and [`Answer::Unknown`]; a timeout or
//! an interruption is `Unknown` with Z3's reason, never a pass and never a
//! violation. Models are read only through [`Witness`], which completes
//! unconstrained values (any value is a witness for them).

use std::time::{Duration, Instant};
use z3::ast::{Bool, BV};
use z3::{Model, Params, SatResult, Solver};

/// A model of the assertions: concrete values for the symbolic packet.
#[derive(Debug)]
pub struct Witness {
    model: Model,
}

impl Witness {
    /// The value of a condition.
    pub fn bool(&self, b: &Bool) -> Option<bool> {
        self.model.eval(b, true).and_then(|v| v.as_bool())
    }

    /// The value of a bit-vector.
    pub fn u64(&self, v: &BV) -> Option<u64> {
        self.model.eval(v, true).and_then(|v| v.as_u64())
    }
}

/// What Z3 said.
#[derive(Debug)]
pub enum Answer {
    /// Satisfiable, with a model.
    Sat(Witness),
    /// Unsatisfiable.
    Unsat,
    /// Z3 could not tell: timeout, resource limit, incompleteness.
    Unknown(String),
}

/// A solver session: assertions, scopes, checks with a timeout, and the
/// time spent in Z3.
#[derive(Debug)]
pub struct Session {
    solver: Solver,
    /// Time spent in `check` so far.
    pub spent: Duration,
}

impl Session {
    /// A fresh session; `timeout` bounds each check.
    pub fn new(timeout: Option<Duration>) -> Session {
        let solver = match std::env::var("NATPATH_LOGIC") {
            Ok(l) => Solver::new_for_logic(l.as_str()).unwrap_or_else(Solver::new),
            Err(_) => Solver::new(),
        };
        if let Some(t) = timeout {
            let mut p = Params::new();
            p.set_u32("timeout", u32::try_from(t.as_millis()).unwrap_or(u32::MAX).max(1));
            solver.set_params(&p);
        }
        Session { solver, spent: Duration::ZERO }
    }

    /// Add an assertion.
    pub fn assert(&self, b: &Bool) {
        self.solver.assert(b);
    }

    /// Open a scope.
    pub fn push(&self) {
        self.solver.push();
    }

    /// Close the innermost scope.
    pub fn pop(&self) {
        self.solver.pop(1);
    }

    /// Check the assertions.
    pub fn check(&mut self) -> Answer {
        let t0 = Instant::now();
        let r = self.solver.check();
        self.spent += t0.elapsed();
        match r {
            SatResult::Sat => match self.solver.get_model() {
                Some(model) => Answer::Sat(Witness { model }),
                None => Answer::Unknown("z3 said sat but gave no model".into()),
            },
            SatResult::Unsat => Answer::Unsat,
            SatResult::Unknown => Answer::Unknown(
                self.solver.get_reason_unknown().unwrap_or_else(|| "z3 gave no reason".into()),
            ),
        }
    }

    /// Check the assertions together with `extra`, in a scope of its own.
    pub fn check_with(&mut self, extra: &[&Bool]) -> Answer {
        self.push();
        for b in extra {
            self.assert(b);
        }
        let a = self.check();
        self.pop();
        a
    }
}

/// Check `assertions` in a fresh session; returns the answer and the time
/// Z3 took.
pub fn solve(assertions: &[&Bool], timeout: Option<Duration>) -> (Answer, Duration) {
    let mut s = Session::new(timeout);
    for a in assertions {
        s.assert(a);
    }
    let a = s.check();
    (a, s.spent)
}
