//! The one place natpath asks Z3 for an answer: a session over a set of
//! assertions, checked with a timeout, whose answer is one of three.
//!
//! Contract: Z3's `sat`, `unsat` and `unknown` map one to one to
//! [`Answer::Sat`], [`Answer::Unsat`] and [`Answer::Unknown`]; a timeout or
//! an interruption is `Unknown` with Z3's reason, never a pass and never a
//! violation. Models are read only through [`Witness`], which completes
//! unconstrained values (any value is a witness for them).

use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};
use z3::ast::{Bool, BV};
use z3::{Model, Params, SatResult, Solver, Tactic};

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
    /// Asked first: proves unsatisfiability fastest on natpath's queries.
    prover: Solver,
    /// Asked when the prover does not say unsat: its model is the one
    /// every report prints.
    solver: Solver,
    timeout: Option<Duration>,
    /// Time spent in `check` so far.
    pub spent: Duration,
}

/// `simplify`, then each of `then`, as a solver.
fn tactic_solver(then: &[&str]) -> Solver {
    then.iter().fold(Tactic::new("simplify"), |t, next| t.and_then(&Tactic::new(next))).solver()
}

/// How often the watchdog of [`guarded`] interrupts Z3 again once the
/// time is up.
const NUDGE: Duration = Duration::from_millis(50);

/// `check()`, interrupted from another thread once `limit` has passed, and
/// again every [`NUDGE`] until it returns. Z3's own `timeout` can miss: on
/// Debian's 4.8.12 a check with a 1 ms timeout was seen running for
/// minutes, its timer thread idle (an interrupt that comes before the check
/// can take it is lost, hence the repeats). A check that never ends is
/// worse than an unknown.
fn guarded(check: impl FnOnce() -> SatResult, limit: Option<Duration>) -> SatResult {
    let Some(limit) = limit else { return check() };
    let ctx = z3::Context::thread_local();
    let handle = ctx.handle();
    let handle = &handle;
    let (done, wait) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut next = limit;
            while let Err(RecvTimeoutError::Timeout) = wait.recv_timeout(next) {
                handle.interrupt();
                next = NUDGE;
            }
        });
        let r = check();
        drop(done);
        r
    })
}

fn set_timeout(s: &Solver, t: Duration) {
    let mut p = Params::new();
    p.set_u32("timeout", u32::try_from(t.as_millis()).unwrap_or(u32::MAX).max(1));
    s.set_params(&p);
}

impl Session {
    /// A fresh session; `timeout` bounds each check.
    pub fn new(timeout: Option<Duration>) -> Session {
        // Bit-vector tactics as solvers: they keep the assertions until
        // `check` and then preprocess and bit-blast them once. The default
        // solver also hands every assertion to its incremental core as it
        // is made, which on natpath's one-shot queries cost as much as the
        // check (`Z3_solver_assert` was a fifth of masq-iff-mark).
        // natpath's queries are Booleans and bit-vectors only, so after
        // simplification either of the two decides them completely:
        // - the prover ends with Z3's `smt` core, 25 to 40 % faster on the
        //   queries that hold (masq-iff-mark's, measured in BENCHMARKS.md);
        // - the solver bit-blasts to `sat`, whose models are the ones the
        //   reports print. A satisfiable query, rare in a catalog that
        //   holds, is asked twice. The witness is still the solver's, and
        //   still the same on every run, but not always the one it gave
        //   before the prover existed: the prover's work leaves terms in
        //   the context that can change which of the valid models the
        //   solver finds first (two gate goldens got another source
        //   address; no check golden changed).
        // A timeout still ends the check as unknown (tested below).
        let prover = tactic_solver(&["solve-eqs", "smt"]);
        let solver = tactic_solver(&["solve-eqs", "bit-blast", "sat"]);
        if let Some(t) = timeout {
            set_timeout(&prover, t);
            set_timeout(&solver, t);
        }
        Session { prover, solver, timeout, spent: Duration::ZERO }
    }

    /// Add an assertion.
    pub fn assert(&self, b: &Bool) {
        self.prover.assert(b);
        self.solver.assert(b);
    }

    /// Open a scope.
    pub fn push(&self) {
        self.prover.push();
        self.solver.push();
    }

    /// Close the innermost scope.
    pub fn pop(&self) {
        self.prover.pop(1);
        self.solver.pop(1);
    }

    /// Check the assertions.
    pub fn check(&mut self) -> Answer {
        let t0 = Instant::now();
        if guarded(|| self.prover.check(), self.timeout) == SatResult::Unsat {
            self.spent += t0.elapsed();
            return Answer::Unsat;
        }
        // The timeout bounds the whole check: the solver gets what is left.
        if let Some(t) = self.timeout {
            match t.checked_sub(t0.elapsed()) {
                Some(left) if !left.is_zero() => set_timeout(&self.solver, left),
                _ => {
                    self.spent += t0.elapsed();
                    return Answer::Unknown(self.prover.get_reason_unknown().unwrap_or_else(|| "timeout".into()));
                }
            }
        }
        let left = self.timeout.map(|t| t.saturating_sub(t0.elapsed()));
        let r = guarded(|| self.solver.check(), left);
        if let Some(t) = self.timeout {
            set_timeout(&self.solver, t);
        }
        self.spent += t0.elapsed();
        match r {
            SatResult::Sat => match self.solver.get_model() {
                Some(model) => Answer::Sat(Witness { model }),
                None => Answer::Unknown("z3 said sat but gave no model".into()),
            },
            SatResult::Unsat => Answer::Unsat,
            SatResult::Unknown => {
                Answer::Unknown(self.solver.get_reason_unknown().unwrap_or_else(|| "z3 gave no reason".into()))
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use z3::ast::BV;

    #[test]
    fn sat_gives_a_model() {
        let x = BV::new_const("solver_test_x", 16);
        let goal = x.bvadd(BV::from_u64(1, 16)).eq(BV::from_u64(8, 16));
        let (a, _) = solve(&[&goal], None);
        match a {
            Answer::Sat(w) => assert_eq!(w.u64(&x), Some(7)),
            other => panic!("expected sat, got {other:?}"),
        }
    }

    #[test]
    fn unsat_is_unsat() {
        let x = BV::new_const("solver_test_y", 8);
        let goal = Bool::and(&[x.bvult(BV::from_u64(3, 8)), x.bvugt(BV::from_u64(5, 8))]);
        assert!(matches!(solve(&[&goal], None).0, Answer::Unsat));
    }

    /// Factor a 62-bit semiprime (two 31-bit primes): far beyond a
    /// millisecond, and beyond minutes without a timeout. `tag` names its
    /// constants.
    fn factoring(tag: &str) -> Bool {
        let p = BV::new_const(format!("solver_test_{tag}p"), 64);
        let q = BV::new_const(format!("solver_test_{tag}q"), 64);
        let n: u64 = 2_147_483_647 * 2_147_483_629;
        Bool::and(&[
            p.bvmul(&q).eq(BV::from_u64(n, 64)),
            p.bvugt(BV::from_u64(1, 64)),
            q.bvugt(BV::from_u64(1, 64)),
            p.bvult(BV::from_u64(1 << 32, 64)),
            q.bvult(BV::from_u64(1 << 32, 64)),
        ])
    }

    #[test]
    fn a_timeout_is_unknown_never_a_verdict() {
        let goal = factoring("");
        match solve(&[&goal], Some(Duration::from_millis(1))).0 {
            Answer::Unknown(why) => assert!(!why.is_empty()),
            Answer::Sat(_) | Answer::Unsat => {} // a very fast machine may finish; never a panic
        }
    }

    /// The watchdog alone ends a check that Z3 would not end by itself
    /// (no Z3 timeout is set here), as unknown.
    #[test]
    fn the_watchdog_ends_a_check_z3_would_not() {
        let s = tactic_solver(&["solve-eqs", "bit-blast", "sat"]);
        s.assert(factoring("w"));
        let t0 = Instant::now();
        let r = guarded(|| s.check(), Some(Duration::from_millis(100)));
        assert_eq!(r, SatResult::Unknown);
        assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
        // The context is usable afterwards.
        let x = BV::new_const("solver_test_wx", 8);
        assert!(matches!(solve(&[&x.bvult(BV::from_u64(3, 8))], Some(Duration::from_secs(10))).0, Answer::Sat(_)));
    }

    #[test]
    fn check_with_leaves_the_session_as_it_was() {
        let x = BV::new_const("solver_test_z", 8);
        let mut s = Session::new(None);
        s.assert(&x.bvult(BV::from_u64(10, 8)));
        let contra = x.bvugt(BV::from_u64(20, 8));
        assert!(matches!(s.check_with(&[&contra]), Answer::Unsat));
        assert!(matches!(s.check(), Answer::Sat(_)));
    }
}
