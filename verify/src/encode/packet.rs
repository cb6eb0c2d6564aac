//! The symbolic packet: bit-vectors for exactly the header fields the IR's
//! matches read (addresses 32 bits, ports 16, protocol 8, TCP flags, ICMP
//! type and code, length, TTL), the skb mark (32), the conntrack view a
//! table sees (state, translation flags, direction, status, connection
//! mark, both tuples), and device terms (an enumerated choice among the
//! node's devices, "none" and "a device the snapshot does not list").
//!
//! Contract: a [`State`] is a pure value of terms; [`State::ite`] merges two
//! states under a condition field by field and leaves fields the two share
//! untouched, so unchanged fields never grow. Nothing here evaluates a rule.

use crate::encode::{NodeEnc, Trail};
use ipnet::Ipv4Net;
use natpath_model::packet::Packet;
use natpath_model::ruleset::{CtStates, Iface};
use std::net::Ipv4Addr;
use z3::ast::{Bool, BV};

/// Width of a device term.
pub const DEV_BITS: u32 = 16;

/// A hash map that holds Z3 terms. Its hasher has fixed keys, so it visits
/// and drops its terms in the same order in every process: Z3 hands the
/// number of a freed term to the next one made, and simplifies by those
/// numbers, so a map of `RandomState` that dropped its terms in another
/// order made the solver pick another model now and then (and the
/// reports print a model's packet).
pub(crate) type TermMap<K, V> =
    std::collections::HashMap<K, V, std::hash::BuildHasherDefault<std::hash::DefaultHasher>>;

thread_local! {
    /// Numerals made so far, by value and width: Z3 makes a sort and a
    /// rational for each `from_u64`, which was a tenth of the encoding.
    static NUMERALS: std::cell::RefCell<TermMap<(u64, u32), BV>> = std::cell::RefCell::new(TermMap::default());
    /// The value of each numeral in `NUMERALS`, by the address of its term.
    /// Z3 4.8's `Z3_get_numeral_uint64` goes through a rational (a tenth of
    /// a walk's encoding); a term `NUMERALS` keeps alive keeps its address,
    /// and both are emptied together, so an address here is never another
    /// term's.
    static VALUES: std::cell::RefCell<natpath_model::hash::FastMap<usize, u64>> =
        std::cell::RefCell::new(natpath_model::hash::FastMap::default());
}

/// The address of a term, as a key while the term is alive.
fn address(x: &BV) -> usize {
    z3::ast::Ast::get_z3_ast(x).as_ptr() as usize
}

/// What the builders note about terms, by the term's address: a lookup
/// hashes an integer, where a map of terms asks Z3 for each term's hash and
/// compares terms through it (a tenth of a query's encoding went to
/// following the copies of a mark that way). The table keeps its terms
/// alive, so an address here is never another term's, and drops them in
/// the order they were noted: the same in every process (see [`TermMap`]).
pub(crate) struct TermTable<V> {
    at: natpath_model::hash::FastMap<usize, usize>,
    items: Vec<(BV, V)>,
}

impl<V> Default for TermTable<V> {
    fn default() -> Self {
        TermTable { at: natpath_model::hash::FastMap::default(), items: Vec::new() }
    }
}

impl<V> TermTable<V> {
    /// What is noted of `x`.
    pub(crate) fn get(&self, x: &BV) -> Option<&V> {
        let i = *self.at.get(&address(x))?;
        self.items.get(i).map(|(_, v)| v)
    }

    /// Note `v` of `x` (in place of what was noted).
    pub(crate) fn insert(&mut self, x: BV, v: V) {
        let key = address(&x);
        match self.at.get(&key) {
            Some(&i) => {
                if let Some(slot) = self.items.get_mut(i) {
                    slot.1 = v;
                }
            }
            None => {
                self.at.insert(key, self.items.len());
                self.items.push((x, v));
            }
        }
    }

    /// Forget everything, dropping the terms in the order they came.
    pub(crate) fn clear(&mut self) {
        self.at.clear();
        self.items.clear();
    }
}

/// Empty this thread's caches of terms: they belong to the context that
/// made them, and one unit of work must not find another's.
pub(crate) fn clear_term_caches() {
    NUMERALS.with(|n| n.borrow_mut().clear());
    VALUES.with(|n| n.borrow_mut().clear());
    KNOWN.with(|k| k.borrow_mut().clear());
    FACTS.with(|f| f.borrow_mut().clear());
    COPIES.with(|c| c.borrow_mut().clear());
}

/// The numeral `v` of width `w` (`v` already within the width).
pub fn numeral(v: u64, w: u32) -> BV {
    NUMERALS.with(|n| {
        let mut n = n.borrow_mut();
        if let Some(x) = n.get(&(v, w)) {
            return x.clone();
        }
        // A bound on what the cache keeps alive.
        if n.len() >= 1 << 20 {
            n.clear();
            VALUES.with(|m| m.borrow_mut().clear());
        }
        let x = BV::from_u64(v, w);
        n.insert((v, w), x.clone());
        VALUES.with(|m| m.borrow_mut().insert(address(&x), v));
        x
    })
}

/// The value of a numeral; `None` for any other term, asked without
/// making Z3 report an error (which `as_u64` on a non-numeral does, at a
/// cost).
pub trait Num {
    /// The numeral's value.
    fn num(&self) -> Option<u64>;
}

impl Num for BV {
    fn num(&self) -> Option<u64> {
        if let Some(v) = VALUES.with(|m| m.borrow().get(&address(self)).copied()) {
            return Some(v);
        }
        if z3::ast::Ast::kind(self) == z3::AstKind::Numeral {
            self.as_u64()
        } else {
            None
        }
    }
}

/// A 32-bit constant.
pub fn bv32(v: u32) -> BV {
    numeral(u64::from(v), 32)
}

/// A 16-bit constant.
pub fn bv16(v: u16) -> BV {
    numeral(u64::from(v), 16)
}

/// An 8-bit constant.
pub fn bv8(v: u8) -> BV {
    numeral(u64::from(v), 8)
}

/// An address constant.
pub fn addr(a: Ipv4Addr) -> BV {
    bv32(u32::from(a))
}

thread_local! {
    /// Bits of bit-vector terms known to be constant on every path: the
    /// builders below ([`bv_and`], [`bv_xor`], [`ite_bv`], and
    /// [`crate::encode::Trail::name_bv`]) note them, so that a test of one
    /// bit of a mark that several rules rewrote elsewhere (Calico's bits
    /// beside kube-proxy's 0x4000) folds while the query is built.
    static KNOWN: std::cell::RefCell<TermTable<(u64, u64)>> = std::cell::RefCell::new(TermTable::default());
}

thread_local! {
    /// What a query's scope says of its packet's addresses (see
    /// [`assume_addr`]).
    static FACTS: std::cell::RefCell<TermTable<AddrFacts>> = std::cell::RefCell::new(TermTable::default());
}

/// Facts about a term of a query's packet that its scope asserts: an
/// address lies in one of `within` (anywhere when empty) and in none of
/// `outside` or `outside_addrs`; a port or protocol is none of `not_values`
/// and, when `within_values` is given, one of those.
#[derive(Debug, Clone, Default)]
pub struct AddrFacts {
    /// The address is in one of these networks (no fact when empty).
    pub within: Vec<Ipv4Net>,
    /// The address is in none of these.
    pub outside: Vec<Ipv4Net>,
    /// The address is none of these.
    pub outside_addrs: std::collections::HashSet<u32>,
    /// The value is none of these.
    pub not_values: std::collections::HashSet<u64>,
    /// The value is one of these.
    pub within_values: Option<std::collections::HashSet<u64>>,
    /// The value is at least this (a TTL).
    pub at_least: Option<u64>,
}

fn overlap(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Note that every packet of the current query has `x` within `facts`:
/// only for a term whose scope constraints say so, built before the facts
/// are noted (the caller asserts them). `in_net`, `eq_bv` and `in_range`
/// then fold the tests the facts decide, so that, say, the rules for
/// 10,000 cluster IPs cost nothing for a packet known to be addressed to a
/// pod. Forgotten with [`forget_known`].
pub fn assume_addr(x: &BV, facts: AddrFacts) {
    if x.num().is_none() {
        FACTS.with(|f| f.borrow_mut().insert(x.clone(), facts));
    }
}

/// The addresses `x` can take, when the noted facts list them (every
/// network `x` lies within is one address): what the dispatch index of a
/// long chain visits for a destination that is one of a few addresses.
pub fn addr_values(x: &BV) -> Option<Vec<u32>> {
    FACTS.with(|f| {
        let f = f.borrow();
        let facts = f.get(x)?;
        if facts.within.is_empty() || facts.within.iter().any(|n| n.prefix_len() != 32) {
            return None;
        }
        let mut v: Vec<u32> = facts.within.iter().map(|n| u32::from(n.addr())).collect();
        v.sort_unstable();
        v.dedup();
        Some(v)
    })
}

/// Whether `x` is in `net`, when the noted facts decide it.
fn net_fold(x: &BV, net: &Ipv4Net) -> Option<bool> {
    FACTS.with(|f| {
        let f = f.borrow();
        let facts = f.get(x)?;
        if net.prefix_len() == 32 && facts.outside_addrs.contains(&u32::from(net.addr())) {
            return Some(false);
        }
        if facts.outside.iter().any(|o| o.contains(net)) {
            return Some(false);
        }
        if !facts.within.is_empty() {
            if !facts.within.iter().any(|w| overlap(w, net)) {
                return Some(false);
            }
            if facts.within.iter().all(|w| net.contains(w)) {
                return Some(true);
            }
        }
        None
    })
}

/// Whether `lo <= x <= hi`, when the noted facts decide it.
fn range_fold(x: &BV, lo: u64, hi: u64) -> Option<bool> {
    FACTS.with(|f| {
        let f = f.borrow();
        let facts = f.get(x)?;
        if lo == hi && facts.not_values.contains(&lo) {
            return Some(false);
        }
        if facts.at_least.is_some_and(|m| hi < m) {
            return Some(false);
        }
        let within = facts.within_values.as_ref()?;
        if within.iter().all(|v| (lo..=hi).contains(v)) {
            return Some(true);
        }
        if !within.iter().any(|v| (lo..=hi).contains(v)) {
            return Some(false);
        }
        None
    })
}

thread_local! {
    /// Bits of a term that are copies of the same bits of another (its
    /// base): a mark that rules rewrote elsewhere keeps kube-proxy's bit
    /// from the mark it had before, which known bits cannot say.
    static COPIES: std::cell::RefCell<TermTable<(BV, u64)>> = std::cell::RefCell::new(TermTable::default());
}

/// How far [`chain`] follows copies.
const CHAIN: usize = 128;

/// The terms `x` copies bits of, nearest first, each with the bits of `x`
/// that are copies of its bits (`x` itself first, every bit).
fn chain(x: &BV) -> Vec<(BV, u64)> {
    let mut v = vec![(x.clone(), width_mask(x.get_size()))];
    COPIES.with(|c| {
        let c = c.borrow();
        let mut cur = x.clone();
        let mut mask = width_mask(x.get_size());
        while v.len() < CHAIN {
            let Some((base, m)) = c.get(&cur) else { break };
            mask &= *m;
            if mask == 0 {
                break;
            }
            v.push((base.clone(), mask));
            cur = base.clone();
        }
    });
    v
}

/// Record that the bits `mask` of `x` are copies of `base`'s (one step;
/// [`chain`] composes them). Marks only (32 bits): they are what rules
/// rewrite bit by bit.
fn note_copies(x: &BV, base: &BV, mask: u64) {
    if mask != 0 && x.get_size() == 32 && x.num().is_none() && !x.ast_eq(base) {
        COPIES.with(|c| c.borrow_mut().insert(x.clone(), (base.clone(), mask)));
    }
}

/// The bits `mask` of `x` are copies of `base`'s (for a builder outside
/// this module that rewrites other bits).
pub(crate) fn note_kept(x: &BV, base: &BV, mask: u32) {
    note_copies(x, base, u64::from(mask));
}

/// `v` names `x`: every bit of it is a copy of `x`'s.
pub(crate) fn note_named(v: &BV, x: &BV) {
    note_copies(v, x, width_mask(x.get_size()));
}

/// Whether the bits `mask` of `a` and `b` are the same on every path: both
/// copy them from one term (a mark kept through rules that only rewrote
/// other bits).
pub fn same_bits(a: &BV, b: &BV, mask: u64) -> bool {
    let bs = chain(b);
    let cb = by_address(&bs);
    chain(a).iter().any(|(x, ma)| ma & mask == mask && cb.get(&address(x)).is_some_and(|mb| mb & mask == mask))
}

/// The masks of a chain by the address of its terms (which the chain
/// keeps alive while the map is used).
fn by_address(chain: &[(BV, u64)]) -> natpath_model::hash::FastMap<usize, u64> {
    chain.iter().map(|(x, m)| (address(x), *m)).collect()
}

fn width_mask(w: u32) -> u64 {
    if w >= 64 {
        u64::MAX
    } else {
        (1u64 << w) - 1
    }
}

/// The bits of `x` known on every path, as `(mask, value)`: a numeral is
/// wholly known, a term the builders noted partly, any other term not at
/// all.
pub fn known_bits(x: &BV) -> (u64, u64) {
    if let Some(v) = x.num() {
        return (width_mask(x.get_size()), v);
    }
    KNOWN.with(|k| k.borrow().get(x).copied()).unwrap_or((0, 0))
}

/// Note that `x` has the bits `k` on every path; a term wholly known
/// becomes its numeral.
pub(crate) fn with_known(x: BV, k: (u64, u64)) -> BV {
    let (mask, value) = k;
    if mask == 0 || x.num().is_some() {
        return x;
    }
    let w = x.get_size();
    if mask == width_mask(w) {
        return numeral(value & mask, w);
    }
    KNOWN.with(|m| m.borrow_mut().insert(x.clone(), (mask, value & mask)));
    x
}

/// Forget every noted term: a query starts afresh (its terms are its own,
/// and the table must not keep the last query's terms alive).
pub fn forget_known() {
    KNOWN.with(|k| k.borrow_mut().clear());
    COPIES.with(|c| c.borrow_mut().clear());
    FACTS.with(|f| f.borrow_mut().clear());
}

/// `a == b`, folded to a constant when both are numerals (or the same
/// term), or when a bit known on both sides differs.
pub fn eq_bv(a: &BV, b: &BV) -> Bool {
    match (a.num(), b.num()) {
        (Some(x), Some(y)) => Bool::from_bool(x == y),
        _ if a.ast_eq(b) => Bool::from_bool(true),
        _ => {
            let ((ma, va), (mb, vb)) = (known_bits(a), known_bits(b));
            if (va ^ vb) & ma & mb != 0 {
                return Bool::from_bool(false);
            }
            let num = |x: &BV, n: &BV| {
                let v = n.num()?;
                if let Some(r) = range_fold(x, v, v) {
                    return Some(r);
                }
                if x.get_size() != 32 {
                    return None;
                }
                net_fold(x, &Ipv4Net::new(Ipv4Addr::from(u32::try_from(v).ok()?), 32).ok()?)
            };
            if let Some(r) = num(a, b).or_else(|| num(b, a)) {
                return Bool::from_bool(r);
            }
            a.eq(b)
        }
    }
}

/// Equality of bit-vectors that folds numerals, for receivers:
/// `x.feq(bv8(6))` is `eq_bv(&x, &bv8(6))`.
pub trait FoldEq {
    /// `self == o`, a constant when both sides are numerals.
    fn feq<T: std::borrow::Borrow<BV>>(&self, o: T) -> Bool;
}

impl FoldEq for BV {
    fn feq<T: std::borrow::Borrow<BV>>(&self, o: T) -> Bool {
        eq_bv(self, o.borrow())
    }
}

/// `a & b`, folded for numerals and known bits.
pub fn bv_and(a: &BV, b: &BV) -> BV {
    match (a.num(), b.num()) {
        (Some(x), Some(y)) => numeral(x & y, a.get_size()),
        (Some(0), _) | (_, Some(0)) => numeral(0, a.get_size()),
        _ => {
            let ((ma, va), (mb, vb)) = (known_bits(a), known_bits(b));
            let zeros = (ma & !va) | (mb & !vb);
            let ones = ma & va & mb & vb;
            let r = with_known(a.bvand(b), (zeros | ones, ones));
            // x & constant copies x's bits where the constant has ones.
            if let (None, Some(k)) | (Some(k), None) = (a.num(), b.num()) {
                note_copies(&r, if a.num().is_none() { a } else { b }, k);
            }
            r
        }
    }
}

/// `a ^ b`, folded for numerals and known bits.
pub fn bv_xor(a: &BV, b: &BV) -> BV {
    match (a.num(), b.num()) {
        (Some(x), Some(y)) => numeral(x ^ y, a.get_size()),
        (Some(0), _) => b.clone(),
        (_, Some(0)) => a.clone(),
        _ => {
            let ((ma, va), (mb, vb)) = (known_bits(a), known_bits(b));
            let r = with_known(a.bvxor(b), (ma & mb, va ^ vb));
            // x ^ constant copies x's bits where the constant has zeros.
            if let (None, Some(k)) | (Some(k), None) = (a.num(), b.num()) {
                note_copies(&r, if a.num().is_none() { a } else { b }, !k);
            }
            r
        }
    }
}

/// `(x & mask) == value` (32 bits), folded for a numeral `x` and for the
/// known bits of `x`.
pub fn masked_eq(x: &BV, mask32: u32, value32: u32) -> Bool {
    let (mask, value) = (u64::from(mask32), u64::from(value32));
    if value & !mask != 0 {
        return Bool::from_bool(false);
    }
    let (km, kv) = known_bits(x);
    if (kv ^ value) & km & mask != 0 {
        return Bool::from_bool(false);
    }
    if mask & !km == 0 {
        return Bool::from_bool(true);
    }
    if mask32 == u32::MAX {
        return x.eq(bv32(value32));
    }
    x.bvand(bv32(mask32)).eq(bv32(value32))
}

/// `x` is inside `net`.
pub fn in_net(x: &BV, net: &Ipv4Net) -> Bool {
    let mask = u32::from(net.netmask());
    if mask == 0 {
        return Bool::from_bool(true);
    }
    let base = u32::from(net.network());
    if let Some(v) = x.num() {
        return Bool::from_bool((v & u64::from(mask)) == u64::from(base));
    }
    if let Some(r) = net_fold(x, &net.trunc()) {
        return Bool::from_bool(r);
    }
    if mask == u32::MAX {
        return x.eq(bv32(base));
    }
    x.bvand(bv32(mask)).eq(bv32(base))
}

/// `lo <= x <= hi` (unsigned), for any width.
pub fn in_range(x: &BV, lo: u64, hi: u64) -> Bool {
    if let Some(v) = x.num() {
        return Bool::from_bool(lo <= v && v <= hi);
    }
    if let Some(r) = range_fold(x, lo, hi) {
        return Bool::from_bool(r);
    }
    let w = x.get_size();
    if lo == hi {
        return x.eq(numeral(lo, w));
    }
    let max = if w >= 64 { u64::MAX } else { (1u64 << w) - 1 };
    match (lo == 0, hi >= max) {
        (true, true) => Bool::from_bool(true),
        (true, false) => x.bvule(numeral(hi, w)),
        (false, true) => x.bvuge(numeral(lo, w)),
        (false, false) => Bool::and(&[x.bvuge(numeral(lo, w)), x.bvule(numeral(hi, w))]),
    }
}

/// A forwarded packet's TTL test and the TTL it goes on with
/// (`ip_forward`): `(expired, next)`, where `expired` (a TTL of 1 or 0)
/// keeps it from being forwarded and `next` is one less. A numeral folds;
/// a query's TTL its scope holds to at least `m` (noted with
/// [`assume_addr`]) folds too, and its successor is noted at least `m - 1`,
/// so the forwards of a walk never build a TTL test.
pub fn forwarded_ttl(ttl: &BV) -> (Bool, BV) {
    let expired = in_range(ttl, 0, 1);
    if let Some(v) = ttl.num() {
        return (expired, numeral(v.saturating_sub(1), 8));
    }
    let next = ttl.bvsub(numeral(1, 8));
    if let Some(m) = least(ttl).filter(|m| *m >= 2) {
        note_least(&next, m - 1);
    }
    (expired, next)
}

/// The least value `x` takes: a numeral's, or what the noted facts say
/// (a TTL's, see [`forwarded_ttl`]).
fn least(x: &BV) -> Option<u64> {
    if let Some(v) = x.num() {
        return Some(v);
    }
    FACTS.with(|f| f.borrow().get(x).and_then(|x| x.at_least))
}

/// Note that `x` is at least `m` on every path (it is a TTL the facts
/// bound: one less than one, or a name of one).
pub(crate) fn note_least(x: &BV, m: u64) {
    if m > 0 && x.num().is_none() {
        FACTS.with(|f| {
            let mut f = f.borrow_mut();
            let mut facts = f.get(x).cloned().unwrap_or_default();
            facts.at_least = Some(facts.at_least.map_or(m, |n| n.max(m)));
            f.insert(x.clone(), facts);
        });
    }
}

/// Carry the bound of an 8-bit `x` (a TTL's) to `v`, a name of it.
pub(crate) fn note_named_least(v: &BV, x: &BV) {
    if x.get_size() == 8 {
        if let Some(m) = least(x) {
            note_least(v, m);
        }
    }
}

/// The fields of an IPv4 packet the rules read, and its mark.
#[derive(Debug, Clone)]
pub struct SymPacket {
    /// Source address (32).
    pub src: BV,
    /// Destination address (32).
    pub dst: BV,
    /// Source port (16).
    pub sport: BV,
    /// Destination port (16).
    pub dport: BV,
    /// IP protocol (8).
    pub proto: BV,
    /// TCP flags (8).
    pub tcp_flags: BV,
    /// ICMP type (8).
    pub icmp_type: BV,
    /// ICMP code (8).
    pub icmp_code: BV,
    /// Total length (16).
    pub len: BV,
    /// TTL (8).
    pub ttl: BV,
    /// The skb mark (32).
    pub mark: BV,
}

impl SymPacket {
    /// A packet whose every field is a fresh constant named `prefix.field`.
    pub fn named(prefix: &str) -> SymPacket {
        let c = |f: &str, w: u32| BV::new_const(format!("{prefix}.{f}"), w);
        SymPacket {
            src: c("src", 32),
            dst: c("dst", 32),
            sport: c("sport", 16),
            dport: c("dport", 16),
            proto: c("proto", 8),
            tcp_flags: c("tcp_flags", 8),
            icmp_type: c("icmp_type", 8),
            icmp_code: c("icmp_code", 8),
            len: c("len", 16),
            ttl: c("ttl", 8),
            mark: c("mark", 32),
        }
    }

    /// The constant packet `p` (its inner packet is not represented).
    pub fn concrete(p: &Packet) -> SymPacket {
        SymPacket {
            src: addr(p.src),
            dst: addr(p.dst),
            sport: bv16(p.sport),
            dport: bv16(p.dport),
            proto: bv8(p.proto.0),
            tcp_flags: bv8(p.tcp_flags),
            icmp_type: bv8(p.icmp.0),
            icmp_code: bv8(p.icmp.1),
            len: bv16(p.len),
            ttl: bv8(p.ttl),
            mark: bv32(p.mark),
        }
    }

    /// Whether the protocol carries ports (TCP, UDP, SCTP).
    pub fn has_ports(&self) -> Bool {
        if let Some(p) = self.proto.num() {
            return Bool::from_bool(matches!(p, 6 | 17 | 132));
        }
        crate::encode::any(&[eq_bv(&self.proto, &bv8(6)), eq_bv(&self.proto, &bv8(17)), eq_bv(&self.proto, &bv8(132))])
    }

    /// The connection tuple of this packet.
    pub fn tuple(&self) -> SymTuple {
        SymTuple {
            src: self.src.clone(),
            sport: self.sport.clone(),
            dst: self.dst.clone(),
            dport: self.dport.clone(),
            proto: self.proto.clone(),
        }
    }

    /// `c ? a : b`, field by field.
    pub fn ite(c: &Bool, a: &SymPacket, b: &SymPacket) -> SymPacket {
        SymPacket {
            src: ite_bv(c, &a.src, &b.src),
            dst: ite_bv(c, &a.dst, &b.dst),
            sport: ite_bv(c, &a.sport, &b.sport),
            dport: ite_bv(c, &a.dport, &b.dport),
            proto: ite_bv(c, &a.proto, &b.proto),
            tcp_flags: ite_bv(c, &a.tcp_flags, &b.tcp_flags),
            icmp_type: ite_bv(c, &a.icmp_type, &b.icmp_type),
            icmp_code: ite_bv(c, &a.icmp_code, &b.icmp_code),
            len: ite_bv(c, &a.len, &b.len),
            ttl: ite_bv(c, &a.ttl, &b.ttl),
            mark: ite_bv(c, &a.mark, &b.mark),
        }
    }

    /// Every field, for models and substitutions.
    pub fn fields(&self) -> [(&'static str, &BV); 11] {
        [
            ("src", &self.src),
            ("dst", &self.dst),
            ("sport", &self.sport),
            ("dport", &self.dport),
            ("proto", &self.proto),
            ("tcp_flags", &self.tcp_flags),
            ("icmp_type", &self.icmp_type),
            ("icmp_code", &self.icmp_code),
            ("len", &self.len),
            ("ttl", &self.ttl),
            ("mark", &self.mark),
        ]
    }
}

/// `c ? a : b` for bit-vectors, without a node when both sides are the same term.
pub fn ite_bv(c: &Bool, a: &BV, b: &BV) -> BV {
    if a.ast_eq(b) {
        return a.clone();
    }
    match c.as_bool() {
        Some(true) => a.clone(),
        Some(false) => b.clone(),
        None => {
            let ((ma, va), (mb, vb)) = (known_bits(a), known_bits(b));
            let same = ma & mb & !(va ^ vb);
            let r = with_known(c.ite(a, b), (same, va & same));
            if r.get_size() == 32 && r.num().is_none() {
                // The nearest term both branches copy from.
                let bs = chain(b);
                let cb = by_address(&bs);
                if let Some((x, m)) =
                    chain(a).into_iter().find_map(|(x, ma)| cb.get(&address(&x)).map(|mb| (x.clone(), ma & mb)))
                {
                    note_copies(&r, &x, m);
                }
            }
            r
        }
    }
}

/// `c ? a : b` for conditions.
pub fn ite_bool(c: &Bool, a: &Bool, b: &Bool) -> Bool {
    if a.ast_eq(b) {
        return a.clone();
    }
    match c.as_bool() {
        Some(true) => a.clone(),
        Some(false) => b.clone(),
        None => c.ite(a, b),
    }
}

/// A conntrack tuple.
#[derive(Debug, Clone)]
pub struct SymTuple {
    /// Source address.
    pub src: BV,
    /// Source port.
    pub sport: BV,
    /// Destination address.
    pub dst: BV,
    /// Destination port.
    pub dport: BV,
    /// Protocol.
    pub proto: BV,
}

impl SymTuple {
    /// The same flow seen from the other end.
    pub fn inverse(&self) -> SymTuple {
        SymTuple {
            src: self.dst.clone(),
            sport: self.dport.clone(),
            dst: self.src.clone(),
            dport: self.sport.clone(),
            proto: self.proto.clone(),
        }
    }

    /// Field-wise equality.
    pub fn eq(&self, o: &SymTuple) -> Bool {
        crate::encode::all(&[
            eq_bv(&self.src, &o.src),
            eq_bv(&self.sport, &o.sport),
            eq_bv(&self.dst, &o.dst),
            eq_bv(&self.dport, &o.dport),
            eq_bv(&self.proto, &o.proto),
        ])
    }

    /// `c ? a : b`.
    pub fn ite(c: &Bool, a: &SymTuple, b: &SymTuple) -> SymTuple {
        SymTuple {
            src: ite_bv(c, &a.src, &b.src),
            sport: ite_bv(c, &a.sport, &b.sport),
            dst: ite_bv(c, &a.dst, &b.dst),
            dport: ite_bv(c, &a.dport, &b.dport),
            proto: ite_bv(c, &a.proto, &b.proto),
        }
    }
}

/// What conntrack tells a table about the packet's connection.
#[derive(Debug, Clone)]
pub struct SymCt {
    /// One of the [`CtStates`] bits INVALID, NEW, ESTABLISHED, RELATED,
    /// UNTRACKED (8 bits).
    pub state: BV,
    /// The destination was translated (`--ctstate DNAT`).
    pub dnat: Bool,
    /// The source was translated (`--ctstate SNAT`).
    pub snat: Bool,
    /// The packet belongs to the reply direction.
    pub reply_dir: Bool,
    /// Status bits (8).
    pub status: BV,
    /// The connection mark (32).
    pub ctmark: BV,
    /// The original tuple.
    pub orig: SymTuple,
    /// The reply tuple.
    pub reply: SymTuple,
}

impl SymCt {
    /// The view of a first packet: NEW, nothing translated, original
    /// direction, tuples from the packet.
    pub fn new_conn(p: &SymPacket) -> SymCt {
        let orig = p.tuple();
        SymCt {
            state: bv8(CtStates::NEW),
            dnat: Bool::from_bool(false),
            snat: Bool::from_bool(false),
            reply_dir: Bool::from_bool(false),
            status: bv8(0),
            ctmark: bv32(0),
            reply: orig.inverse(),
            orig,
        }
    }

    /// `c ? a : b`.
    pub fn ite(c: &Bool, a: &SymCt, b: &SymCt) -> SymCt {
        SymCt {
            state: ite_bv(c, &a.state, &b.state),
            dnat: ite_bool(c, &a.dnat, &b.dnat),
            snat: ite_bool(c, &a.snat, &b.snat),
            reply_dir: ite_bool(c, &a.reply_dir, &b.reply_dir),
            status: ite_bv(c, &a.status, &b.status),
            ctmark: ite_bv(c, &a.ctmark, &b.ctmark),
            orig: SymTuple::ite(c, &a.orig, &b.orig),
            reply: SymTuple::ite(c, &a.reply, &b.reply),
        }
    }
}

/// The packet with its conntrack view and untracked flag, at one point of a
/// node passage.
#[derive(Debug, Clone)]
pub struct State {
    /// The packet.
    pub pkt: SymPacket,
    /// Conntrack's view, shared between states until one changes it
    /// (`Rc::make_mut`): most rules leave it alone, and a state is copied
    /// at every rule that can fork a path.
    pub ct: std::rc::Rc<SymCt>,
    /// `-j CT --notrack` / `NOTRACK` was applied.
    pub notrack: Bool,
    /// The mark as the packet left nat PREROUTING (or OUTPUT), where
    /// kube-proxy marks it; the mark it arrived with before that. Each
    /// flow keeps its own, so an invariant can compare it with the mark
    /// the same flow carries later.
    pub pre_mark: BV,
    /// A DNAT or REDIRECT rule took effect on this flow, on this node.
    pub dnat_rule: Bool,
    /// An SNAT or MASQUERADE rule took effect on this flow, on this node.
    pub snat_rule: Bool,
}

impl State {
    /// A packet arriving with no connection yet known.
    pub fn arriving(pkt: SymPacket) -> State {
        let ct = std::rc::Rc::new(SymCt::new_conn(&pkt));
        let pre_mark = pkt.mark.clone();
        let f = Bool::from_bool(false);
        State { pkt, ct, notrack: f.clone(), pre_mark, dnat_rule: f.clone(), snat_rule: f }
    }

    /// `c ? a : b`.
    pub fn ite(c: &Bool, a: &State, b: &State) -> State {
        // A constant condition picks a side whole (a rule that always
        // matches), without a test per field.
        match c.as_bool() {
            Some(true) => return a.clone(),
            Some(false) => return b.clone(),
            None => {}
        }
        State {
            pkt: SymPacket::ite(c, &a.pkt, &b.pkt),
            ct: if std::rc::Rc::ptr_eq(&a.ct, &b.ct) {
                std::rc::Rc::clone(&a.ct)
            } else {
                std::rc::Rc::new(SymCt::ite(c, &a.ct, &b.ct))
            },
            notrack: ite_bool(c, &a.notrack, &b.notrack),
            pre_mark: ite_bv(c, &a.pre_mark, &b.pre_mark),
            dnat_rule: ite_bool(c, &a.dnat_rule, &b.dnat_rule),
            snat_rule: ite_bool(c, &a.snat_rule, &b.snat_rule),
        }
    }

    /// The same state with every field named (see [`Trail::name_bv`]).
    pub fn named(&self, t: &mut Trail) -> State {
        let p = &self.pkt;
        let tuple = |t: &mut Trail, x: &SymTuple| SymTuple {
            src: t.name_bv(&x.src),
            sport: t.name_bv(&x.sport),
            dst: t.name_bv(&x.dst),
            dport: t.name_bv(&x.dport),
            proto: t.name_bv(&x.proto),
        };
        State {
            pkt: SymPacket {
                src: t.name_bv(&p.src),
                dst: t.name_bv(&p.dst),
                sport: t.name_bv(&p.sport),
                dport: t.name_bv(&p.dport),
                proto: t.name_bv(&p.proto),
                tcp_flags: t.name_bv(&p.tcp_flags),
                icmp_type: t.name_bv(&p.icmp_type),
                icmp_code: t.name_bv(&p.icmp_code),
                len: t.name_bv(&p.len),
                ttl: t.name_bv(&p.ttl),
                mark: t.name_bv(&p.mark),
            },
            ct: std::rc::Rc::new(SymCt {
                state: t.name_bv(&self.ct.state),
                dnat: t.name_bool(&self.ct.dnat),
                snat: t.name_bool(&self.ct.snat),
                reply_dir: t.name_bool(&self.ct.reply_dir),
                status: t.name_bv(&self.ct.status),
                ctmark: t.name_bv(&self.ct.ctmark),
                orig: tuple(t, &self.ct.orig),
                reply: tuple(t, &self.ct.reply),
            }),
            notrack: t.name_bool(&self.notrack),
            pre_mark: t.name_bv(&self.pre_mark),
            dnat_rule: t.name_bool(&self.dnat_rule),
            snat_rule: t.name_bool(&self.snat_rule),
        }
    }

    /// Merge exclusive `(condition, state)` pairs into one state, valid on
    /// the disjunction of the conditions (the last state is the default).
    pub fn merge(parts: &[(Bool, State)]) -> Option<State> {
        let mut it = parts.iter().rev();
        let (_, last) = it.next()?;
        let mut acc = last.clone();
        for (c, s) in it {
            acc = State::ite(c, s, &acc);
        }
        Some(acc)
    }
}

/// A set of paths: the condition under which the packet is here, and its
/// state there.
#[derive(Debug, Clone)]
pub struct Flow {
    /// True on the paths that reach this point.
    pub cond: Bool,
    /// The packet's state on them.
    pub state: State,
}

impl Flow {
    /// Merge exclusive flows (`None` when there are none).
    pub fn merge(parts: Vec<Flow>) -> Option<Flow> {
        let live: Vec<Flow> = parts.into_iter().filter(|f| !crate::encode::is_false(&f.cond)).collect();
        if live.len() == 1 {
            return live.into_iter().next();
        }
        let conds: Vec<Bool> = live.iter().map(|f| f.cond.clone()).collect();
        let pairs: Vec<(Bool, State)> = live.iter().map(|f| (f.cond.clone(), f.state.clone())).collect();
        let state = State::merge(&pairs)?;
        Some(Flow { cond: crate::encode::any(&conds), state })
    }

    /// The same paths restricted to `c`.
    pub fn and(&self, c: &Bool) -> Flow {
        Flow { cond: crate::encode::and2(&self.cond, c), state: self.state.clone() }
    }

    /// The same flow with its condition and state named.
    pub fn named(&self, t: &mut Trail) -> Flow {
        Flow { cond: t.name_bool(&self.cond), state: self.state.named(t) }
    }

    /// No paths.
    pub fn none(state: State) -> Flow {
        Flow { cond: Bool::from_bool(false), state }
    }
}

/// A device term: which of the node's devices a packet came in by or goes
/// out of (value 0 = none; see [`NodeEnc::devs`]).
#[derive(Debug, Clone)]
pub struct DevTerm {
    /// The value (16 bits).
    pub bv: BV,
    /// The value when it is a constant.
    pub known: Option<u16>,
    /// What "no device" means to `ip rule iif` selectors (`lo` for locally
    /// generated packets, as the kernel's flow has it).
    pub none_is_lo: bool,
    /// The term only takes listed devices (or none), never the value of a
    /// device the snapshot does not list: no free choice is needed for how
    /// a pattern matches that one.
    pub closed: bool,
}

impl DevTerm {
    /// A constant device value.
    pub fn konst(v: u16) -> DevTerm {
        DevTerm { bv: numeral(u64::from(v), DEV_BITS), known: Some(v), none_is_lo: false, closed: true }
    }

    /// No device.
    pub fn none() -> DevTerm {
        DevTerm::konst(0)
    }

    /// A symbolic device value.
    pub fn symbolic(bv: BV) -> DevTerm {
        DevTerm { bv, known: None, none_is_lo: false, closed: false }
    }

    /// A symbolic device value the caller constrains to listed devices.
    pub fn symbolic_closed(bv: BV) -> DevTerm {
        DevTerm { bv, known: None, none_is_lo: false, closed: true }
    }

    /// The term may take the value of a device the snapshot does not list.
    pub fn may_be_other(&self, other_v: u16) -> bool {
        match self.known {
            Some(k) => k == other_v,
            None => !self.closed,
        }
    }

    /// The term lies in `lo..=hi`.
    fn within(&self, lo: u16, hi: u16) -> Bool {
        if lo == hi {
            return self.is(lo);
        }
        match self.known {
            Some(k) => Bool::from_bool(lo <= k && k <= hi),
            None => crate::encode::and2(
                &self.bv.bvuge(numeral(u64::from(lo), DEV_BITS)),
                &self.bv.bvule(numeral(u64::from(hi), DEV_BITS)),
            ),
        }
    }

    /// The term is value `v`.
    pub fn is(&self, v: u16) -> Bool {
        match self.known {
            Some(k) => Bool::from_bool(k == v),
            None => self.bv.eq(numeral(u64::from(v), DEV_BITS)),
        }
    }

    /// The term is one of `vals` (ascending): one range test per run of
    /// consecutive values.
    pub fn one_of(&self, vals: &[u16]) -> Bool {
        if let Some(k) = self.known {
            return Bool::from_bool(vals.binary_search(&k).is_ok());
        }
        crate::encode::any(&self.within_runs(vals.iter().copied()))
    }

    /// One range test for each run of consecutive values of `vals`
    /// (ascending).
    fn within_runs(&self, vals: impl IntoIterator<Item = u16>) -> Vec<Bool> {
        let mut alts = Vec::new();
        let mut run: Option<(u16, u16)> = None;
        for v in vals {
            run = match run {
                Some((lo, hi)) if hi.checked_add(1) == Some(v) => Some((lo, v)),
                Some((lo, hi)) => {
                    alts.push(self.within(lo, hi));
                    Some((v, v))
                }
                None => Some((v, v)),
            };
        }
        if let Some((lo, hi)) = run {
            alts.push(self.within(lo, hi));
        }
        alts
    }

    /// The term names the device `name` of `node` (for "no device", only
    /// when `none_is_lo` and `name` is `lo`).
    pub fn named(&self, node: &NodeEnc<'_>, name: &str) -> Bool {
        let mut alts = Vec::new();
        if let Some(i) = node.devs.iter().position(|d| d == name) {
            alts.push(self.is(u16::try_from(i + 1).unwrap_or(u16::MAX)));
        }
        if self.none_is_lo && name == "lo" {
            alts.push(self.is(0));
        }
        crate::encode::any(&alts)
    }

    /// Whether `-i`/`-o` pattern `pat` matches (xt `ifname_compare`): over the
    /// listed devices exactly; "no device" compares the empty name; a device
    /// the snapshot does not list matches through `other` (a free choice the
    /// caller makes per pattern).
    pub fn matches(&self, node: &NodeEnc<'_>, pat: &Iface, other: &dyn Fn() -> Bool) -> Bool {
        let mut alts = Vec::new();
        if pat.matches("") {
            alts.push(self.is(0));
        }
        // Devices are numbered in name order, so a wildcard's devices are
        // few runs of consecutive values: one range test per run.
        let hits = node.devs.iter().enumerate().filter(|(_, d)| pat.matches(d));
        alts.extend(self.within_runs(hits.map(|(i, _)| u16::try_from(i + 1).unwrap_or(u16::MAX))));
        let other_v = node.other_dev();
        let may_be_other = self.may_be_other(other_v);
        if may_be_other {
            let o = if pat.wildcard && pat.name.is_empty() { Bool::from_bool(true) } else { other() };
            alts.push(crate::encode::and2(&self.is(other_v), &o));
        }
        crate::encode::any(&alts)
    }

    /// `c ? a : b`.
    pub fn ite(c: &Bool, a: &DevTerm, b: &DevTerm) -> DevTerm {
        let known = match (a.known, b.known, c.as_bool()) {
            (Some(x), Some(y), _) if x == y => Some(x),
            (k, _, Some(true)) => k,
            (_, k, Some(false)) => k,
            _ => None,
        };
        DevTerm {
            bv: ite_bv(c, &a.bv, &b.bv),
            known,
            none_is_lo: a.none_is_lo && b.none_is_lo,
            closed: a.closed && b.closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A numeral's value is read from the cache of the numerals made here,
    /// and from Z3 for one made elsewhere; nothing else has one, and a
    /// cache emptied with its terms answers for the new terms only.
    #[test]
    fn numerals_read_their_values_made_here_or_elsewhere() {
        clear_term_caches();
        assert_eq!(numeral(0x4000, 32).num(), Some(0x4000));
        assert_eq!(BV::from_u64(7, 16).num(), Some(7));
        assert_eq!((BV::new_const("x", 32) + numeral(1, 32)).num(), None);
        assert_eq!(BV::new_const("y", 8).num(), None);
        clear_term_caches();
        let fresh: Vec<BV> = (0..64).map(|k| BV::new_const(format!("z{k}"), 32)).collect();
        assert!(fresh.iter().all(|x| x.num().is_none()));
        assert_eq!(numeral(3, 32).num(), Some(3));
    }

    /// A mark that two paths rewrote differently, but both with kube-proxy's
    /// bit set, tests as set without a solver; a bit the paths disagree on
    /// stays a term.
    #[test]
    fn known_bits_fold_mark_tests_through_ite_and_names() {
        forget_known();
        let m = BV::new_const("known_bits_test.mark", 32);
        let c = Bool::new_const("known_bits_test.c");
        // KUBE-MARK-MASQ: (m & !0x4000) ^ 0x4000; Calico: (x & !0xf0000) ^ 0x10000.
        let masq = bv_xor(&bv_and(&m, &bv32(!0x4000)), &bv32(0x4000));
        let calico = bv_xor(&bv_and(&masq, &bv32(!0xf_0000)), &bv32(0x1_0000));
        let merged = ite_bv(&c, &calico, &masq);
        let mut t = crate::encode::Trail::default();
        let named = t.name_bv(&merged);
        assert_eq!(masked_eq(&named, 0x4000, 0x4000).as_bool(), Some(true));
        assert_eq!(masked_eq(&named, 0x4000, 0).as_bool(), Some(false));
        assert_eq!(eq_bv(&named, &bv32(0)).as_bool(), Some(false));
        // 0x10000 is set on one path only: not known.
        assert_eq!(masked_eq(&named, 0x1_0000, 0x1_0000).as_bool(), None);
        // Nothing is known of the bare mark.
        assert_eq!(masked_eq(&m, 0x4000, 0x4000).as_bool(), None);
        forget_known();
        assert_eq!(masked_eq(&named, 0x4000, 0x4000).as_bool(), None);
    }
}
