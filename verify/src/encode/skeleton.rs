//! A propositional refutation, tried before a goal goes to the solver.
//!
//! Some goals that do not fold to false while they are built are false
//! for a reason their Boolean structure alone shows. masq-iff-mark's
//! "marked xor masqueraded" on a flow whose mark depends on the source (a
//! `KUBE-SEP-*` rule's `-s POD/32 -j KUBE-MARK-MASQ`) is one: the
//! masquerade is `KUBE-POSTROUTING`'s own test of the same mark bit, so
//! the goal reads `c ∧ (m ⊕ ¬(c ∧ ¬m))`, false whatever `c` and `m` are.
//! The encoder names its terms (a fresh constant, defined equal to the
//! term in the query's scope), so the two sides of the `⊕` meet only
//! through those definitions, and Z3 bit-blasts the whole query to find
//! that out: a few milliseconds each, a quarter of a 10,000-Service
//! catalog.
//!
//! [`refutes`] expands the Boolean names the scope defines, takes every
//! comparison of non-Boolean terms as an opaque atom (the same term, the
//! same atom), and tries every assignment of the atoms, each disjunct of
//! the goal on its own. When no assignment satisfies a disjunct, no
//! packet can: an atom's meaning only rules assignments out, and the rest
//! of the scope only rules models out. It never says "satisfiable": what
//! it cannot refute within its bounds goes to the solver as before.

use crate::encode::packet::TermMap;
use z3::ast::{Ast, Bool};

/// Most atoms one disjunct may have.
const MAX_ATOMS: usize = 64;
/// Most nodes of the skeleton: beyond it the goal goes to the solver.
const MAX_NODES: usize = 20_000;
/// Deepest nesting followed (the recursion's bound).
const MAX_DEPTH: u32 = 400;

/// A node of the Boolean skeleton; children are indexes of earlier nodes.
#[derive(Debug, Clone)]
enum Sk {
    Const(bool),
    Atom(usize),
    Not(usize),
    And(Vec<usize>),
    Or(Vec<usize>),
    Xor(usize, usize),
    Iff(usize, usize),
    Implies(usize, usize),
    Ite(usize, usize, usize),
}

impl Sk {
    fn children(&self) -> Vec<usize> {
        match self {
            Sk::Const(_) | Sk::Atom(_) => Vec::new(),
            Sk::Not(a) => vec![*a],
            Sk::And(v) | Sk::Or(v) => v.clone(),
            Sk::Xor(a, b) | Sk::Iff(a, b) | Sk::Implies(a, b) => vec![*a, *b],
            Sk::Ite(c, a, b) => vec![*c, *a, *b],
        }
    }
}

/// Whether `goal` is unsatisfiable by its Boolean structure alone, the
/// Boolean names that `scope` defines (`name = term`) expanded. `false`
/// means "not shown", never "satisfiable".
pub fn refutes(scope: &[Bool], goal: &Bool) -> bool {
    let defs = definitions(scope);
    // Names nested deeper than `expand` stay atoms: a free atom in place
    // of a term only lets more assignments through, so a refutation with
    // fewer names expanded is as sound, and its search much smaller (a
    // path condition shared by both sides of a `⊕` is one atom, not the
    // dozen address tests it is made of).
    EXPANSIONS.iter().any(|&expand| {
        let mut b =
            Builder { defs: &defs, memo: TermMap::default(), nodes: Vec::new(), atoms: 0, open: Vec::new(), expand };
        let Some(root) = b.node(goal, 0, 0) else { return false };
        let mut parts = Vec::new();
        b.disjuncts(root, &mut parts);
        let mut values = vec![None; b.nodes.len()];
        parts.iter().all(|&d| b.unsat(d, &mut values))
    })
}

/// How deep names are expanded, tried in turn.
const EXPANSIONS: [u32; 3] = [1, 2, 8];

/// The Boolean constants `scope` defines, with their definitions.
fn definitions(scope: &[Bool]) -> TermMap<Bool, Bool> {
    let mut defs = TermMap::default();
    for s in scope {
        if !matches!(op(s), Some(Op::Eq)) || s.num_children() != 2 {
            continue;
        }
        let (Some(lhs), Some(rhs)) = (s.nth_child(0), s.nth_child(1)) else { continue };
        let (Some(name), Some(def)) = (lhs.as_bool(), rhs.as_bool()) else { continue };
        if is_name(&name) {
            defs.entry(name).or_insert(def);
        }
    }
    defs
}

/// The Boolean operators the skeleton follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    And,
    Or,
    Not,
    Xor,
    Eq,
    Implies,
    Ite,
}

/// The operator of an application, by its name. (`FuncDecl::kind` is not
/// used: the z3 crate's list of kinds is a newer Z3's, and the value
/// Debian's 4.8.12 returns for an uninterpreted symbol is not in it.)
fn op(b: &Bool) -> Option<Op> {
    if !b.is_app() || b.num_children() == 0 {
        return None;
    }
    Some(match b.safe_decl().ok()?.name().as_str() {
        "and" => Op::And,
        "or" => Op::Or,
        "not" => Op::Not,
        "xor" => Op::Xor,
        "=" | "iff" => Op::Eq,
        "=>" | "implies" => Op::Implies,
        "if" | "ite" => Op::Ite,
        _ => return None,
    })
}

/// An uninterpreted Boolean constant: a leaf that is not `true` or `false`.
fn is_name(b: &Bool) -> bool {
    b.as_bool().is_none() && b.is_app() && b.num_children() == 0
}

struct Builder<'d> {
    defs: &'d TermMap<Bool, Bool>,
    memo: TermMap<Bool, usize>,
    nodes: Vec<Sk>,
    atoms: usize,
    /// The names being expanded (a definition that names itself, which
    /// the encoder never writes, stays an atom).
    open: Vec<Bool>,
    /// How many names deep definitions are expanded.
    expand: u32,
}

impl Builder<'_> {
    fn push(&mut self, s: Sk) -> Option<usize> {
        if self.nodes.len() >= MAX_NODES {
            return None;
        }
        self.nodes.push(s);
        Some(self.nodes.len() - 1)
    }

    fn atom(&mut self) -> Option<usize> {
        self.atoms += 1;
        self.push(Sk::Atom(self.atoms - 1))
    }

    fn node(&mut self, b: &Bool, depth: u32, names: u32) -> Option<usize> {
        if let Some(&i) = self.memo.get(b) {
            return Some(i);
        }
        if depth > MAX_DEPTH {
            return None;
        }
        let i = self.fresh_node(b, depth, names)?;
        self.memo.insert(b.clone(), i);
        Some(i)
    }

    fn fresh_node(&mut self, b: &Bool, depth: u32, names: u32) -> Option<usize> {
        if let Some(v) = b.as_bool() {
            return self.push(Sk::Const(v));
        }
        if !b.is_app() {
            return self.atom();
        }
        let n = b.num_children();
        if n == 0 {
            return match self.defs.get(b) {
                Some(def) if names < self.expand && !self.open.contains(b) => {
                    self.open.push(b.clone());
                    let i = self.node(def, depth + 1, names + 1);
                    self.open.pop();
                    i
                }
                _ => self.atom(),
            };
        }
        let Some(o) = op(b) else { return self.atom() };
        // The operands, when they are Boolean (a comparison of bit-vectors
        // is an atom).
        let Some(kids) = (0..n).map(|k| b.nth_child(k)?.as_bool()).collect::<Option<Vec<Bool>>>() else {
            return self.atom();
        };
        let v = kids.iter().map(|k| self.node(k, depth + 1, names)).collect::<Option<Vec<usize>>>()?;
        match (o, v.as_slice()) {
            (Op::And, _) => self.push(Sk::And(v)),
            (Op::Or, _) => self.push(Sk::Or(v)),
            (Op::Not, &[a]) => self.push(Sk::Not(a)),
            (Op::Xor, &[a, c]) => self.push(Sk::Xor(a, c)),
            (Op::Eq, &[a, c]) => self.push(Sk::Iff(a, c)),
            (Op::Implies, &[a, c]) => self.push(Sk::Implies(a, c)),
            (Op::Ite, &[c, a, e]) => self.push(Sk::Ite(c, a, e)),
            _ => self.atom(),
        }
    }

    /// The disjuncts of `i`, nested disjunctions flattened.
    fn disjuncts(&self, i: usize, out: &mut Vec<usize>) {
        match self.nodes.get(i) {
            Some(Sk::Or(v)) => v.iter().for_each(|&k| self.disjuncts(k, out)),
            _ => out.push(i),
        }
    }

    /// Whether no assignment of its atoms makes node `root` true: a search
    /// over the atoms, one at a time, that drops a branch as soon as the
    /// partial assignment makes `root` false (three-valued evaluation) and
    /// stops, not refuted, at the first that makes it true or when its
    /// budget of node evaluations is spent.
    fn unsat(&self, root: usize, values: &mut [Option<bool>]) -> bool {
        // The nodes under `root`, in index order: children before parents.
        let mut under = vec![false; root + 1];
        let mut stack = vec![root];
        while let Some(i) = stack.pop() {
            match under.get_mut(i) {
                Some(seen) if !*seen => *seen = true,
                _ => continue,
            }
            if let Some(s) = self.nodes.get(i) {
                stack.extend(s.children());
            }
        }
        let order: Vec<usize> = (0..=root).filter(|&i| under.get(i) == Some(&true)).collect();
        let atoms: Vec<usize> = order
            .iter()
            .filter_map(|&i| match self.nodes.get(i) {
                Some(Sk::Atom(a)) => Some(*a),
                _ => None,
            })
            .collect();
        if atoms.len() > MAX_ATOMS {
            return false;
        }
        let mut search = Search { nodes: &self.nodes, order: &order, atoms: &atoms, root, budget: BUDGET };
        let mut assign = vec![None; self.atoms];
        search.refuted(0, &mut assign, values) == Some(true)
    }
}

/// Node evaluations one disjunct's search may spend.
const BUDGET: usize = 100_000;

struct Search<'a> {
    nodes: &'a [Sk],
    order: &'a [usize],
    atoms: &'a [usize],
    root: usize,
    budget: usize,
}

impl Search<'_> {
    /// `Some(true)`: no extension of `assign` (atoms `k..` free) makes the
    /// root true; `Some(false)`: one does; `None`: out of budget.
    fn refuted(&mut self, k: usize, assign: &mut [Option<bool>], values: &mut [Option<bool>]) -> Option<bool> {
        self.budget = self.budget.checked_sub(self.order.len())?;
        match self.eval(assign, values) {
            Some(false) => return Some(true),
            Some(true) => return Some(false),
            None => {}
        }
        let &a = self.atoms.get(k)?;
        for v in [true, false] {
            if let Some(slot) = assign.get_mut(a) {
                *slot = Some(v);
            }
            let r = self.refuted(k + 1, assign, values);
            if r != Some(true) {
                return r;
            }
        }
        if let Some(slot) = assign.get_mut(a) {
            *slot = None;
        }
        Some(true)
    }

    /// The root's value under a partial assignment (Kleene's logic:
    /// `None` where the free atoms decide).
    fn eval(&self, assign: &[Option<bool>], values: &mut [Option<bool>]) -> Option<bool> {
        for &i in self.order {
            let v = |k: usize| values.get(k).copied().flatten();
            let x = match self.nodes.get(i)? {
                Sk::Const(c) => Some(*c),
                Sk::Atom(a) => assign.get(*a).copied().flatten(),
                Sk::Not(a) => v(*a).map(|x| !x),
                Sk::And(ks) => absorbed(ks.iter().map(|&k| v(k)), false),
                Sk::Or(ks) => absorbed(ks.iter().map(|&k| v(k)), true),
                Sk::Xor(a, b) => Some(v(*a)? != v(*b)?),
                Sk::Iff(a, b) => Some(v(*a)? == v(*b)?),
                Sk::Implies(a, b) => match (v(*a), v(*b)) {
                    (Some(false), _) | (_, Some(true)) => Some(true),
                    (Some(true), Some(false)) => Some(false),
                    _ => None,
                },
                Sk::Ite(c, a, b) => match v(*c) {
                    Some(true) => v(*a),
                    Some(false) => v(*b),
                    None if v(*a).is_some() && v(*a) == v(*b) => v(*a),
                    None => None,
                },
            };
            if let Some(slot) = values.get_mut(i) {
                *slot = x;
            }
        }
        values.get(self.root).copied().flatten()
    }
}

/// Kleene's conjunction (`zero` false) or disjunction (`zero` true) of
/// `vals`: `zero` when one operand is, the other value when all are, else
/// undecided.
fn absorbed(vals: impl Iterator<Item = Option<bool>> + Clone, zero: bool) -> Option<bool> {
    if vals.clone().any(|x| x == Some(zero)) {
        Some(zero)
    } else if vals.into_iter().all(|x| x == Some(!zero)) {
        Some(!zero)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use z3::ast::BV;

    fn bv(name: &str) -> BV {
        BV::new_const(name, 32)
    }

    #[test]
    fn a_masquerade_that_tests_the_same_bit_is_refuted_through_names() {
        // c ∧ (m ⊕ snat), snat = ¬(c ∧ ¬m), with c and snat named.
        let mark = bv("mark");
        let m = mark.bvand(BV::from_u64(0x4000, 32)).eq(BV::from_u64(0x4000, 32));
        let c_def = bv("src").eq(BV::from_u64(1, 32)) | bv("src").eq(BV::from_u64(2, 32));
        let c = Bool::new_const("c");
        let snat = Bool::new_const("snat");
        let scope = vec![
            c.eq(&c_def),
            snat.eq(Bool::and(&[&c, &m.not()]).ite(&Bool::from_bool(false), &Bool::from_bool(true))),
        ];
        let goal = Bool::and(&[&c, &m.xor(&snat)]);
        assert!(refutes(&scope, &goal));
        // Without the definition of `snat` the structure shows nothing.
        assert!(!refutes(&scope[..1], &goal));
    }

    #[test]
    fn a_satisfiable_disjunct_is_never_refuted() {
        let m = bv("mark").eq(BV::from_u64(1, 32));
        let a = Bool::new_const("a");
        // The first disjunct is false, the second is not.
        let goal = Bool::or(&[&Bool::and(&[&a, &a.not()]), &Bool::and(&[&a, &m])]);
        assert!(!refutes(&[], &goal));
        assert!(refutes(&[], &Bool::and(&[&a, &a.not()])));
        // Atoms are opaque: `x = 1 ∧ x = 2` is the solver's to refute.
        let two = bv("mark").eq(BV::from_u64(2, 32));
        assert!(!refutes(&[], &Bool::and(&[&m, &two])));
    }

    #[test]
    fn too_many_atoms_are_left_to_the_solver() {
        let atoms: Vec<Bool> = (0..=MAX_ATOMS as u64).map(|k| bv("x").eq(BV::from_u64(k, 32))).collect();
        let refs: Vec<&Bool> = atoms.iter().collect();
        let mut all = refs.clone();
        let contradiction = Bool::new_const("p");
        let not_p = contradiction.not();
        all.push(&contradiction);
        all.push(&not_p);
        assert!(!refutes(&[], &Bool::and(&all)));
        assert!(refutes(&[], &Bool::and(&all[MAX_ATOMS..])));
    }

    /// A random Boolean formula: atoms compare bit-vectors (so that some
    /// of them are related, which the skeleton does not know), names are
    /// defined in the scope.
    #[derive(Debug, Clone)]
    enum F {
        Atom(u8),
        Name(u8),
        Not(Box<F>),
        And(Vec<F>),
        Or(Vec<F>),
        Xor(Box<F>, Box<F>),
        Ite(Box<F>, Box<F>, Box<F>),
    }

    fn formula(names: bool) -> impl proptest::strategy::Strategy<Value = F> {
        use proptest::prelude::*;
        let leaf = if names {
            prop_oneof![(0u8..6).prop_map(F::Atom), (0u8..3).prop_map(F::Name)].boxed()
        } else {
            (0u8..6).prop_map(F::Atom).boxed()
        };
        leaf.prop_recursive(4, 24, 3, |inner| {
            prop_oneof![
                inner.clone().prop_map(|f| F::Not(Box::new(f))),
                proptest::collection::vec(inner.clone(), 1..4).prop_map(F::And),
                proptest::collection::vec(inner.clone(), 1..4).prop_map(F::Or),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| F::Xor(Box::new(a), Box::new(b))),
                (inner.clone(), inner.clone(), inner).prop_map(|(c, a, b)| F::Ite(
                    Box::new(c),
                    Box::new(a),
                    Box::new(b)
                )),
            ]
        })
    }

    /// The term of `f`; a name is its constant, or its definition when
    /// `defs` is given.
    fn term(f: &F, defs: Option<&[F]>) -> Bool {
        match f {
            F::Atom(k) => bv(if *k < 3 { "x" } else { "y" }).eq(BV::from_u64(u64::from(*k % 3), 32)),
            F::Name(k) => match defs.and_then(|d| d.get(usize::from(*k))) {
                Some(d) => term(d, defs),
                None => Bool::new_const(format!("n{k}")),
            },
            F::Not(a) => term(a, defs).not(),
            F::And(v) => Bool::and(&v.iter().map(|x| term(x, defs)).collect::<Vec<_>>()),
            F::Or(v) => Bool::or(&v.iter().map(|x| term(x, defs)).collect::<Vec<_>>()),
            F::Xor(a, b) => term(a, defs).xor(term(b, defs)),
            F::Ite(c, a, b) => term(c, defs).ite(&term(a, defs), &term(b, defs)),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// What the skeleton refutes, Z3 finds unsatisfiable; and a formula
        /// against its own expansion is always refuted.
        #[test]
        fn a_refutation_is_never_wrong(
            defs in proptest::collection::vec(formula(false), 3),
            f in formula(true),
            g in formula(true),
        ) {
            let scope: Vec<Bool> = (0..3u8).map(|k| Bool::new_const(format!("n{k}")).eq(term(&defs[usize::from(k)], None))).collect();
            for goal in [Bool::and(&[term(&f, None), term(&g, None)]), term(&f, None).xor(term(&g, None)), term(&f, None)] {
                if refutes(&scope, &goal) {
                    let s = z3::Solver::new();
                    scope.iter().for_each(|b| s.assert(b));
                    s.assert(&goal);
                    proptest::prop_assert_eq!(s.check(), z3::SatResult::Unsat, "refuted, but satisfiable: {}", goal);
                }
            }
            let against = Bool::and(&[term(&f, None), term(&f, Some(&defs)).not()]);
            proptest::prop_assert!(refutes(&scope, &against), "not refuted: {}", against);
        }
    }
}
