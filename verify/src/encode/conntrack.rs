//! Conntrack as constraints: what the tables of one node see about a
//! packet's connection (a first packet, a tunnel carrier of a live flow, or
//! a packet that may belong to a connection a walk opened earlier), the
//! bindings a first packet leaves, and how those bindings rewrite the
//! packets of the reply direction.
//!
//! Semantics follow nf_conntrack_core.c and nf_nat_core.c, as the model's
//! `conntrack` does: the nat table runs only for a connection's first packet
//! (NEW, not untracked); a binding rewrites the reply's destination at
//! PREROUTING (undoing SNAT: back to the original source) and its source at
//! POSTROUTING/INPUT (undoing DNAT: back to the original destination); a
//! connection is confirmed, and so exists for its reply, only when its first
//! packet leaves POSTROUTING or INPUT.
//!
//! Contract: exact for first packets, carriers and replies. A reply is looked
//! up by the reply tuple only (a packet of a walk's reply direction that
//! happened to equal some connection's *original* tuple would be treated as
//! new): an approximation that cannot arise in a two-way walk of one
//! connection.

use crate::encode::packet::{bv32, bv8, ite_bv, FoldEq, State, SymCt, SymTuple};
use crate::encode::{and2, any, not, EncodeOptions};
use natpath_model::ruleset::{CtStates, CtStatus};
use z3::ast::{Bool, BV};

/// A connection a walk opened on a node: where the reply is matched.
#[derive(Debug, Clone)]
pub struct Binding {
    /// The connection was confirmed (its first packet left the node).
    pub present: Bool,
    /// The first packet was tracked (not NOTRACK): `present` without the
    /// condition that the path was taken.
    pub tracked: Bool,
    /// The original tuple (as the first packet arrived).
    pub orig: SymTuple,
    /// The reply tuple (the inverse of the translated original).
    pub reply: SymTuple,
    /// The destination was translated.
    pub dnat: Bool,
    /// The source was translated.
    pub snat: Bool,
    /// The connection mark.
    pub ctmark: BV,
}

/// What conntrack knows when a packet arrives on (or is sent by) a node.
#[derive(Debug, Clone)]
pub enum CtCtx {
    /// No entry: a first packet (NEW), and the nat table runs.
    Fresh,
    /// A tunnel carrier of a live flow (ESTABLISHED when the option says so).
    Carrier {
        /// The carrier goes the reply way of the carrier flow.
        reply_dir: bool,
    },
    /// The packet may be the reply of one of these connections.
    Replies(Vec<Binding>),
}

/// The packet after conntrack looked it up.
#[derive(Debug, Clone)]
pub struct Tracked {
    /// The state with the conntrack view filled in.
    pub state: State,
    /// True when the nat table runs (a first packet, tracked).
    pub first: Bool,
    /// For [`CtCtx::Replies`]: which binding the packet matched (exclusive).
    pub bound: Vec<(Bool, Binding)>,
}

/// Conntrack's lookup of an arriving packet.
pub fn track(st: &State, ctx: &CtCtx, opts: &EncodeOptions) -> Tracked {
    let mut state = st.clone();
    let fresh = SymCt::new_conn(&st.pkt);
    let (ct, first, bound) = match ctx {
        CtCtx::Fresh => (fresh, not(&st.notrack), Vec::new()),
        CtCtx::Carrier { reply_dir } if opts.carrier_established => {
            let t = st.pkt.tuple();
            let orig = if *reply_dir { t.inverse() } else { t };
            let ct = SymCt {
                state: bv8(CtStates::ESTABLISHED),
                dnat: Bool::from_bool(false),
                snat: Bool::from_bool(false),
                reply_dir: Bool::from_bool(*reply_dir),
                status: bv8(CtStatus::CONFIRMED | CtStatus::SEEN_REPLY),
                ctmark: bv32(0),
                reply: orig.inverse(),
                orig,
            };
            (ct, Bool::from_bool(false), Vec::new())
        }
        CtCtx::Carrier { .. } => (fresh, not(&st.notrack), Vec::new()),
        CtCtx::Replies(bs) => {
            let t = st.pkt.tuple();
            let mut not_yet = Bool::from_bool(true);
            let mut bound = Vec::new();
            let mut ct = fresh;
            let mut views = Vec::new();
            for b in bs {
                let hit = and2(&and2(&b.present, &t.eq(&b.reply)), &not_yet);
                if crate::encode::is_false(&hit) {
                    continue;
                }
                not_yet = and2(&not_yet, &not(&hit));
                views.push((hit.clone(), b.clone()));
                bound.push((hit, b.clone()));
            }
            for (hit, b) in views.iter().rev() {
                let view = SymCt {
                    state: bv8(CtStates::ESTABLISHED),
                    dnat: b.dnat.clone(),
                    snat: b.snat.clone(),
                    reply_dir: Bool::from_bool(true),
                    status: bv8(CtStatus::CONFIRMED),
                    ctmark: b.ctmark.clone(),
                    orig: b.orig.clone(),
                    reply: b.reply.clone(),
                };
                ct = SymCt::ite(hit, &view, &ct);
            }
            let any_bound = any(&bound.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>());
            (ct, and2(&not(&st.notrack), &not(&any_bound)), bound)
        }
    };
    let mut ct = ct;
    ct.state = ite_bv(&st.notrack, &bv8(CtStates::UNTRACKED), &ct.state);
    state.ct = std::rc::Rc::new(ct);
    Tracked { state, first, bound }
}

/// The PREROUTING/OUTPUT half of a binding: a reply's destination goes back
/// to the original source.
pub fn rewrite_dst(st: &State, bound: &[(Bool, Binding)]) -> State {
    let mut s = st.clone();
    for (hit, b) in bound {
        s.pkt.dst = ite_bv(hit, &b.orig.src, &s.pkt.dst);
        s.pkt.dport = ite_bv(hit, &b.orig.sport, &s.pkt.dport);
    }
    s
}

/// The POSTROUTING/INPUT half: a reply's source goes back to the original
/// destination.
pub fn rewrite_src(st: &State, bound: &[(Bool, Binding)]) -> State {
    let mut s = st.clone();
    for (hit, b) in bound {
        s.pkt.src = ite_bv(hit, &b.orig.dst, &s.pkt.src);
        s.pkt.sport = ite_bv(hit, &b.orig.dport, &s.pkt.sport);
    }
    s
}

/// Record a destination translation in the connection (`nf_nat_setup_info`):
/// the reply will come from the new destination.
pub fn set_dnat(st: &mut State) {
    let changed = not(&and2(&st.ct.reply.src.feq(&st.pkt.dst), &st.ct.reply.sport.feq(&st.pkt.dport)));
    let (dst, dport) = (st.pkt.dst.clone(), st.pkt.dport.clone());
    let ct = std::rc::Rc::make_mut(&mut st.ct);
    ct.dnat = crate::encode::or2(&ct.dnat, &changed);
    ct.reply.src = dst;
    ct.reply.sport = dport;
}

/// Record a source translation: the reply will go to the new source.
pub fn set_snat(st: &mut State) {
    let changed = not(&and2(&st.ct.reply.dst.feq(&st.pkt.src), &st.ct.reply.dport.feq(&st.pkt.sport)));
    let (src, sport) = (st.pkt.src.clone(), st.pkt.sport.clone());
    let ct = std::rc::Rc::make_mut(&mut st.ct);
    ct.snat = crate::encode::or2(&ct.snat, &changed);
    ct.reply.dst = src;
    ct.reply.dport = sport;
}

/// The binding a first packet leaves when it is confirmed on `present`.
pub fn binding_of(st: &State, present: &Bool) -> Binding {
    Binding {
        present: and2(present, &not(&st.notrack)),
        tracked: not(&st.notrack),
        orig: st.ct.orig.clone(),
        reply: st.ct.reply.clone(),
        dnat: st.ct.dnat.clone(),
        snat: st.ct.snat.clone(),
        ctmark: st.ct.ctmark.clone(),
    }
}
