//! One node's packet path: the IPv4 hooks in the kernel's order with their
//! tables, conntrack, NAT, the routing decision and reverse path filtering.
//!
//! Semantics (docs/kernel-semantics.md, net/ipv4/ip_input.c, ip_forward.c, ip_output.c):
//! - received: raw PREROUTING, conntrack, mangle PREROUTING, nat PREROUTING
//!   (DNAT for a first packet, the binding otherwise), routing with
//!   `fib_validate_source` (rp_filter), then either INPUT (mangle, filter,
//!   security, nat) or FORWARD (mangle, filter, security) and POSTROUTING
//!   (mangle, nat: SNAT/MASQUERADE for a first packet);
//! - generated here: routing, raw OUTPUT, conntrack, mangle OUTPUT, nat
//!   OUTPUT, filter OUTPUT, security OUTPUT, routing again when the mark or
//!   the destination changed, then POSTROUTING;
//! - MASQUERADE takes `inet_select_addr(out_dev, nexthop)`;
//! - conntrack confirms at the end of POSTROUTING or INPUT only;
//! - replies are un-NATed in two halves: destination at PREROUTING,
//!   source at POSTROUTING.
//!
//! Contract: never panics; anything the snapshot cannot tell ends the
//! packet as [`NodeEnd::Unknown`] with the reason.

use crate::conntrack::{self, Conn};
use crate::fib::{Fib, FlowKey};
use crate::netstate::RouteType;
use crate::packet::{Hook, Packet};
use crate::ruleset::{CtStates, CtStatus, Proto, RejectWith, TableName};
use crate::snapshot::Node;
use crate::traverse::{self, Chooser, CtView, Effect, Env, Hit, IndexedTable, MatchState, NatAction, Verdict};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Options of the node model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeOptions {
    /// Treat IPIP carrier flows (protocol 4 between two nodes) without an
    /// entry as ESTABLISHED, as they are on a live cluster (docs/kernel-semantics.md).
    /// VXLAN carriers are not: each outer flow takes a source port hashed
    /// from the inner flow and its answer comes back on another one, so the
    /// kernel keeps them UNREPLIED (NEW), measured on this kernel.
    pub carrier_established: bool,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions { carrier_established: true }
    }
}

/// One rule (or policy) that took effect on a node, with the packet after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStep<'a> {
    /// The hook.
    pub hook: Hook,
    /// The table, chain, rule and effect.
    pub hit: Hit<'a>,
    /// The packet after the step, when the step changed it (NAT).
    pub packet_after: Option<Packet>,
}

impl NodeStep<'_> {
    /// The canonical text of the rule (empty for a policy).
    pub fn text(&self) -> String {
        self.hit.text()
    }
}

/// How a packet's passage through a node ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEnd {
    /// Delivered to the node itself (after INPUT).
    Local(Packet),
    /// Sent out of `dev` towards `nexthop`.
    Out {
        /// The packet as it leaves.
        packet: Packet,
        /// The output device.
        dev: String,
        /// The next hop (gateway or destination).
        nexthop: Ipv4Addr,
    },
    /// Dropped: where and why.
    Dropped(String),
    /// Rejected (an ICMP error or a TCP reset goes back): where and why.
    Rejected(String),
    /// Could not be evaluated: why.
    Unknown(String),
}

/// Who refused a packet the node answers with a packet of its own, and
/// with what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedBy {
    /// A REJECT rule, with its `--reject-with`.
    Rule(RejectWith),
    /// The routing decision for a received packet (`ip_error`), with the
    /// ICMP code it sends in REJECT's words: no route (net unreachable),
    /// an `unreachable` route (host unreachable), a `prohibit` route or
    /// rule (administratively prohibited), an `unreachable` policy rule
    /// (net unreachable).
    Route(RejectWith),
    /// Forwarding (`ip_forward`): the packet arrived with a TTL of 1 or
    /// 0, so it may not be forwarded; the node answers with an ICMP time
    /// exceeded (11/0) and nothing else of the packet happens.
    Hops,
}

/// A packet the node refused, as the refusal saw it: a REJECT rule or a
/// failed route. The node answers it with a packet of its own
/// ([`NodeModel::send_refusal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The refused packet at the rule or the routing decision.
    pub packet: Packet,
    /// The hook of the rule; for a route, PREROUTING (routing follows it).
    pub hook: Hook,
    /// Who refused it, and with what.
    pub by: RefusedBy,
    /// The ICMP error's source address: the refused destination when it
    /// is the node's own, the input device's address under
    /// `icmp_errors_use_inbound_ifaddr`, else unspecified (routing
    /// chooses it as for any packet the node sends).
    pub src: Ipv4Addr,
    /// The refused packet's connection (not confirmed: it never will be),
    /// and whether the packet was its reply direction.
    pub conn: Option<(Conn, bool)>,
}

impl Refused {
    /// The node's answer: an ICMP destination unreachable quoting the
    /// refused packet, or a TCP reset of its connection; `None` for
    /// `tcp-reset` of a packet that is not TCP, and for an ICMP error
    /// about an ICMP error (the kernel sends nothing).
    pub fn answer(&self) -> Option<Packet> {
        let p = &self.packet;
        let with = match self.by {
            RefusedBy::Rule(with) | RefusedBy::Route(with) => with,
            RefusedBy::Hops => return (!p.is_icmp_error()).then(|| Packet::icmp_error(p, 11, 0, self.src)),
        };
        let code = match with {
            RejectWith::TcpReset => {
                if p.proto != Proto::TCP {
                    return None;
                }
                return Some(p.reset());
            }
            RejectWith::NetUnreachable => 0,
            RejectWith::HostUnreachable => 1,
            RejectWith::ProtoUnreachable => 2,
            RejectWith::PortUnreachable => 3,
            RejectWith::NetProhibited => 9,
            RejectWith::HostProhibited => 10,
            RejectWith::AdminProhibited => 13,
        };
        // icmp_send never answers an ICMP error with another.
        if p.is_icmp_error() {
            return None;
        }
        Some(Packet::icmp_error(p, 3, code, self.src))
    }
}

/// A packet the node forwards out of the interface it came in by, to a
/// next hop on the sender's own link: the kernel tells the sender with an
/// ICMP redirect (5/1, host) sent before the FORWARD hook, and forwards the
/// packet all the same ([`NodeModel::send_redirect`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// The redirected packet as routing saw it.
    pub packet: Packet,
    /// The better next hop the redirect names.
    pub gateway: Ipv4Addr,
    /// The packet's connection and whether the packet was its reply direction.
    pub conn: Option<(Conn, bool)>,
    /// The connection was confirmed before this packet (its NAT is done).
    pub confirmed: bool,
}

impl Redirect {
    /// The ICMP redirect quoting the packet (its source chosen by routing).
    pub fn message(&self) -> Packet {
        Packet::icmp_error(&self.packet, 5, 1, Ipv4Addr::UNSPECIFIED)
    }
}

/// What one passage produced.
#[derive(Debug, Clone)]
pub struct Passage<'a> {
    /// Steps in order.
    pub steps: Vec<NodeStep<'a>>,
    /// The end.
    pub end: NodeEnd,
    /// The mark as the packet entered nat POSTROUTING (None if it never did).
    pub mark_at_nat_postrouting: Option<u32>,
    /// The mark after nat PREROUTING (None if it never got there).
    pub mark_after_nat_prerouting: Option<u32>,
    /// The destination translation made here: (before, after).
    pub dnat: Option<(Packet, Packet)>,
    /// The source translation made here: (before, after, by MASQUERADE).
    pub snat: Option<(Packet, Packet, bool)>,
    /// The source port was made random (`--random-fully`).
    pub sport_random: bool,
    /// The hooks the packet crossed, in order.
    pub hooks: Vec<Hook>,
    /// The packet a REJECT refused, when one ended the passage.
    pub refused: Option<Refused>,
    /// The ICMP redirect the node sends because of this packet.
    pub redirect: Option<Redirect>,
}

/// What does not change while packets cross a node: its dumps, its
/// routing, and its tables indexed (built once, shared by every branch of a
/// trace).
pub struct NodeTables<'a> {
    /// The node's dumps.
    pub node: &'a Node,
    /// Routing.
    pub fib: Fib<'a>,
    tables: Vec<IndexedTable<'a>>,
}

impl<'a> NodeTables<'a> {
    /// Index a node's tables (with dispatch indexes over long chains).
    pub fn new(node: &'a Node) -> Self {
        Self::build(node, IndexedTable::new)
    }

    /// The same without dispatch indexes: every chain scanned rule by rule
    /// (the naive baseline of the benchmarks).
    pub fn linear(node: &'a Node) -> Self {
        Self::build(node, IndexedTable::linear)
    }

    fn build(node: &'a Node, index: fn(&'a crate::ruleset::Table) -> IndexedTable<'a>) -> Self {
        let fib = Fib::new(&node.routes, &node.ip_rules, &node.interfaces, &node.sysctl);
        let tables = node.ruleset.tables.iter().map(index).collect();
        NodeTables { node, fib, tables }
    }
}

/// One node's model: its tables, routing, conntrack and match state.
pub struct NodeModel<'a> {
    st: Arc<NodeTables<'a>>,
    /// The node's dumps.
    pub node: &'a Node,
    /// Conntrack.
    pub ct: conntrack::Table,
    /// `recent` lists and `nth` counters.
    pub state: MatchState,
    /// Options.
    pub opts: NodeOptions,
}

struct Ctx<'a, 'p> {
    steps: Vec<NodeStep<'a>>,
    /// A table's hits before they become steps (kept to reuse its buffer).
    hits: Vec<Hit<'a>>,
    hooks: Vec<Hook>,
    conn: Option<Conn>,
    conn_idx: Option<usize>,
    reply_dir: bool,
    state: u8,
    notrack: bool,
    /// The next hop of the output route, for MASQUERADE.
    nexthop: Option<Ipv4Addr>,
    /// The connection a packet the node sends because of another one is
    /// attached to (RELATED), instead of a lookup.
    related: Option<(Conn, bool)>,
    /// nat POSTROUTING runs its table for this RELATED packet: its
    /// connection never had a source translation decided (a REJECT's reset).
    nat_src_new: bool,
    /// nat drops this packet where it would rewrite it: an ICMP redirect
    /// about a connection whose NAT is not done or that has one
    /// (`nf_nat_icmp_reply_translation`).
    nat_drops: bool,
    passage: &'p mut PassageInfo,
}

impl<'a, 'p> Ctx<'a, 'p> {
    /// The state of a passage before its first hook: no connection yet.
    fn new(passage: &'p mut PassageInfo) -> Self {
        Ctx {
            steps: Vec::with_capacity(STEPS_HINT),
            hits: Vec::with_capacity(STEPS_HINT),
            hooks: Vec::new(),
            conn: None,
            conn_idx: None,
            reply_dir: false,
            state: CtStates::INVALID,
            notrack: false,
            nexthop: None,
            related: None,
            nat_src_new: false,
            nat_drops: false,
            passage,
        }
    }
}

/// How a packet the node generates stands to a connection (see [`Ctx`]'s
/// fields of the same names).
#[derive(Default)]
struct SendAs {
    related: Option<(Conn, bool)>,
    nat_src_new: bool,
    nat_drops: bool,
}

#[derive(Default)]
struct PassageInfo {
    mark_at_nat_postrouting: Option<u32>,
    mark_after_nat_prerouting: Option<u32>,
    dnat: Option<(Packet, Packet)>,
    snat: Option<(Packet, Packet, bool)>,
    sport_random: bool,
    refused: Option<Refused>,
    redirect: Option<Redirect>,
}

/// Steps a passage usually records (a kube-proxy + Calico NodePort SYN
/// takes about 40): room for them is made once.
const STEPS_HINT: usize = 64;

enum HookEnd {
    Go,
    Stop(NodeEnd),
}

impl<'a> NodeModel<'a> {
    /// A model of `node` with empty conntrack.
    pub fn new(node: &'a Node, opts: NodeOptions) -> Self {
        Self::shared(Arc::new(NodeTables::new(node)), opts)
    }

    /// A model over tables indexed once, with empty conntrack.
    pub fn shared(st: Arc<NodeTables<'a>>, opts: NodeOptions) -> Self {
        let node = st.node;
        NodeModel { st, node, ct: conntrack::Table::default(), state: MatchState::default(), opts }
    }

    /// The node's routing.
    pub fn fib(&self) -> &Fib<'a> {
        &self.st.fib
    }

    fn ct_view(&self, ctx: &Ctx<'a, '_>) -> CtView {
        let mut v = CtView {
            state: if ctx.notrack { CtStates::UNTRACKED } else { ctx.state },
            reply_dir: ctx.reply_dir,
            ..CtView::default()
        };
        if let Some(c) = &ctx.conn {
            v.snat = c.snat;
            v.dnat = c.dnat;
            v.mark = c.mark;
            v.status = if c.seen_reply { CtStatus::SEEN_REPLY } else { 0 };
            if ctx.conn_idx.is_some() {
                v.status |= CtStatus::CONFIRMED;
            }
            v.orig = Some((c.orig.src, c.orig.sport, c.orig.dst, c.orig.dport, c.orig.proto));
            v.reply = Some((c.reply.src, c.reply.sport, c.reply.dst, c.reply.dport, c.reply.proto));
        }
        v
    }

    /// Run one table at one hook.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        name: TableName,
        hook: Hook,
        pkt: &mut Packet,
        ctx: &mut Ctx<'a, '_>,
        iif: Option<&str>,
        oif: Option<&str>,
        local_origin: bool,
        chooser: &mut dyn Chooser,
    ) -> Verdict {
        let Some(idx) = self.st.tables.iter().position(|t| t.table.name == name) else {
            return Verdict::Accept;
        };
        let mut view = self.ct_view(ctx);
        let mut notrack = ctx.notrack;
        let Some(table) = self.st.tables.get(idx) else { return Verdict::Accept };
        let verdict = {
            let env =
                Env { fib: &self.st.fib, ipsets: &self.node.ipsets, hook, in_iface: iif, out_iface: oif, local_origin };
            traverse::run_table(table, pkt, &mut view, &mut notrack, &env, &mut self.state, chooser, &mut ctx.hits)
        };
        ctx.notrack = notrack;
        if let Some(c) = &mut ctx.conn {
            c.mark = view.mark;
        }
        // Mark changes are in the effect; NAT steps get the packet after.
        ctx.steps.extend(ctx.hits.drain(..).map(|hit| NodeStep { hook, hit, packet_after: None }));
        verdict
    }

    /// How a table's verdict ends the passage, if it does. A rule that drops
    /// or rejects is named by its dump file and line too (the last step
    /// recorded is that rule), as the encoding names it.
    fn end_of(&self, v: &Verdict, hook: Hook, name: TableName, steps: &[NodeStep<'_>]) -> Option<NodeEnd> {
        let node = &self.node.name;
        let at = |chain: &str, rule: usize| -> String {
            let loc = steps
                .last()
                .filter(|s| s.hit.table == name && s.hit.chain == chain && s.hit.rule == Some(rule))
                .and_then(|s| s.hit.ir)
                .map(|r| &r.loc)
                .filter(|l| l.line > 0);
            match loc {
                Some(l) => format!("{}:{} ({} {chain} rule {rule})", l.file, l.line, name.as_str()),
                None => format!("{} {chain} rule {rule}", name.as_str()),
            }
        };
        match v {
            Verdict::Accept | Verdict::Nat(_) => None,
            Verdict::Drop { chain, rule } => Some(NodeEnd::Dropped(match rule {
                Some(r) => format!("dropped on {node} by {} ({hook})", at(chain, *r)),
                None => format!("dropped on {node} by the policy of {} {chain}", name.as_str()),
            })),
            Verdict::Reject { chain, rule, with } => {
                Some(NodeEnd::Rejected(format!("rejected on {node} by {} ({})", at(chain, *rule), with.as_str())))
            }
            Verdict::Unknown(why) => Some(NodeEnd::Unknown(why.clone())),
        }
    }

    /// Run the filter-like tables of a hook in priority order.
    #[allow(clippy::too_many_arguments)]
    fn run_hook(
        &mut self,
        hook: Hook,
        tables: &[TableName],
        pkt: &mut Packet,
        ctx: &mut Ctx<'a, '_>,
        iif: Option<&str>,
        oif: Option<&str>,
        local_origin: bool,
        chooser: &mut dyn Chooser,
    ) -> HookEnd {
        ctx.hooks.push(hook);
        for &t in tables {
            if t == TableName::Nat {
                if ctx.nat_drops {
                    return HookEnd::Stop(NodeEnd::Dropped(format!(
                        "the ICMP redirect is dropped by nat on {} ({hook}): the connection it is about has a translation or is not translated yet",
                        self.node.name
                    )));
                }
                if let Some(end) = self.nat(hook, pkt, ctx, iif, oif, local_origin, chooser) {
                    return HookEnd::Stop(end);
                }
                continue;
            }
            let v = self.run(t, hook, pkt, ctx, iif, oif, local_origin, chooser);
            if let Some(end) = self.end_of(&v, hook, t, &ctx.steps) {
                if let Verdict::Reject { with, .. } = v {
                    let src = self.icmp_error_src(pkt, if local_origin { None } else { iif });
                    ctx.passage.refused = Some(Refused {
                        packet: pkt.clone(),
                        hook,
                        by: RefusedBy::Rule(with),
                        src,
                        conn: ctx.conn.clone().map(|c| (c, ctx.reply_dir)),
                    });
                }
                return HookEnd::Stop(end);
            }
        }
        HookEnd::Go
    }

    /// The nat table at a hook: rules for a first packet, the binding otherwise.
    #[allow(clippy::too_many_arguments)]
    fn nat(
        &mut self,
        hook: Hook,
        pkt: &mut Packet,
        ctx: &mut Ctx<'a, '_>,
        iif: Option<&str>,
        oif: Option<&str>,
        local_origin: bool,
        chooser: &mut dyn Chooser,
    ) -> Option<NodeEnd> {
        let dst_half = matches!(hook, Hook::Prerouting | Hook::Output);
        if ctx.notrack {
            return None;
        }
        let first = (ctx.conn_idx.is_none() && ctx.state == CtStates::NEW) || (!dst_half && ctx.nat_src_new);
        if !first {
            if let Some(c) = &ctx.conn {
                let before = pkt.clone();
                if pkt.is_icmp_error() {
                    c.apply_icmp_error(pkt, ctx.reply_dir, dst_half);
                } else if dst_half {
                    c.apply_dst(pkt, ctx.reply_dir);
                } else {
                    c.apply_src(pkt, ctx.reply_dir);
                }
                if *pkt != before {
                    ctx.steps.push(NodeStep {
                        hook,
                        hit: Hit {
                            table: TableName::Nat,
                            chain: "(conntrack)",
                            rule: None,
                            ir: None,
                            effect: Effect::Rewrite(dst_half, Box::new((before, pkt.clone()))),
                        },
                        packet_after: Some(pkt.clone()),
                    });
                }
            }
            if hook == Hook::Postrouting {
                self.passage_mark(ctx, pkt);
            }
            return None;
        }
        if hook == Hook::Postrouting {
            self.passage_mark(ctx, pkt);
        }
        let v = self.run(TableName::Nat, hook, pkt, ctx, iif, oif, local_origin, chooser);
        if hook == Hook::Prerouting || hook == Hook::Output {
            ctx.passage.mark_after_nat_prerouting.get_or_insert(pkt.mark);
        }
        match v {
            Verdict::Nat(NatAction::Dnat(r)) if dst_half => {
                let before = pkt.clone();
                let addr = r.addrs.map(|a| a.lo).unwrap_or(pkt.dst);
                let port = r.ports.map(|p| p.lo).unwrap_or(pkt.dport);
                pkt.dst = addr;
                if pkt.has_ports() {
                    pkt.dport = port;
                }
                if let Some(c) = &mut ctx.conn {
                    c.set_dnat(pkt.dst, pkt.dport);
                }
                ctx.passage.dnat = Some((before, pkt.clone()));
                self.note_after(ctx, pkt);
                None
            }
            Verdict::Nat(NatAction::Redirect(ports)) if dst_half => {
                let addr = match iif {
                    Some(dev) => self.st.fib.interface(dev).and_then(|i| i.addrs.first()).map(|a| a.addr.addr()),
                    None => Some(Ipv4Addr::LOCALHOST),
                };
                let Some(addr) = addr else {
                    return Some(NodeEnd::Dropped(format!(
                        "REDIRECT on {}: the input device has no address",
                        self.node.name
                    )));
                };
                let before = pkt.clone();
                pkt.dst = addr;
                if let Some(p) = ports {
                    pkt.dport = p.lo;
                }
                if let Some(c) = &mut ctx.conn {
                    c.set_dnat(pkt.dst, pkt.dport);
                }
                ctx.passage.dnat = Some((before, pkt.clone()));
                self.note_after(ctx, pkt);
                None
            }
            Verdict::Nat(NatAction::Snat { to, random_fully }) if !dst_half => {
                let src = to.addrs.map(|a| a.lo).unwrap_or(pkt.src);
                self.snat(ctx, pkt, src, to.ports, random_fully, false);
                None
            }
            Verdict::Nat(NatAction::Masquerade { ports, random }) if hook == Hook::Postrouting => {
                let Some(dev) = oif else {
                    return Some(NodeEnd::Unknown("MASQUERADE without an output device".into()));
                };
                let nexthop = ctx.nexthop.unwrap_or(pkt.dst);
                let Some(src) = self.st.fib.select_src(dev, nexthop) else {
                    return Some(NodeEnd::Dropped(format!(
                        "MASQUERADE on {}: no address to take for `{dev}`",
                        self.node.name
                    )));
                };
                self.snat(ctx, pkt, src, ports, random, true);
                None
            }
            Verdict::Nat(a) => Some(NodeEnd::Unknown(format!("{a:?} at {hook} is not a valid NAT for that hook"))),
            other => self.end_of(&other, hook, TableName::Nat, &ctx.steps),
        }
    }

    /// Apply a source translation chosen by SNAT or MASQUERADE (`masq`):
    /// the port is kept when it lies in the range, as the kernel tries to.
    #[allow(clippy::too_many_arguments)]
    fn snat(
        &self,
        ctx: &mut Ctx<'a, '_>,
        pkt: &mut Packet,
        src: Ipv4Addr,
        ports: Option<crate::ruleset::PortRange>,
        random: bool,
        masq: bool,
    ) {
        let before = pkt.clone();
        pkt.src = src;
        if let Some(p) = ports {
            if pkt.has_ports() && !p.contains(pkt.sport) {
                pkt.sport = p.lo;
            }
        }
        if let Some(c) = &mut ctx.conn {
            c.set_snat(pkt.src, pkt.sport);
            c.sport_random |= random;
        }
        ctx.passage.sport_random |= random;
        ctx.passage.snat = Some((before, pkt.clone(), masq));
        self.note_after(ctx, pkt);
    }

    fn passage_mark(&self, ctx: &mut Ctx<'a, '_>, pkt: &Packet) {
        ctx.passage.mark_at_nat_postrouting.get_or_insert(pkt.mark);
    }

    fn note_after(&self, ctx: &mut Ctx<'a, '_>, pkt: &Packet) {
        if let Some(last) = ctx.steps.last_mut() {
            last.packet_after = Some(pkt.clone());
        }
    }

    /// Conntrack's view of an arriving packet: find its connection or start one.
    fn track(&self, pkt: &Packet, ctx: &mut Ctx<'a, '_>, carrier: bool) {
        if ctx.notrack {
            ctx.state = CtStates::UNTRACKED;
            return;
        }
        if let Some((c, reply)) = ctx.related.take() {
            // The node's own answer to a packet it refused: attached to that
            // packet's connection, confirmed or not (measured: RELATED).
            ctx.conn = Some(c);
            ctx.conn_idx = None;
            ctx.reply_dir = reply;
            ctx.state = CtStates::RELATED;
            return;
        }
        if let Some(quoted) = pkt.inner.as_deref().filter(|_| pkt.is_icmp_error()) {
            // An ICMP error belongs to the connection of the packet it
            // quotes, in the other direction: conntrack looks the quoted
            // tuple up inverted (the quote is the packet as it left, after
            // this node's translation, so only its inverse is one of the
            // connection's tuples); without one it is INVALID.
            match self.ct.find_tuple(&crate::conntrack::Tuple::of(quoted).inverse()) {
                Some((i, reply)) => {
                    ctx.conn = self.ct.conns.get(i).cloned();
                    ctx.conn_idx = Some(i);
                    ctx.reply_dir = reply;
                    ctx.state = CtStates::RELATED;
                }
                None => {
                    ctx.conn = None;
                    ctx.conn_idx = None;
                    ctx.state = CtStates::INVALID;
                }
            }
            return;
        }
        match self.ct.find(pkt) {
            Some((i, reply)) => {
                ctx.conn = self.ct.conns.get(i).cloned();
                ctx.conn_idx = Some(i);
                ctx.reply_dir = reply;
                ctx.state = CtStates::ESTABLISHED;
                if let (false, Some(c)) = (reply, &ctx.conn) {
                    if !c.seen_reply {
                        // A second original packet before any reply is still NEW
                        // for ctstate, but nat does not run again.
                        ctx.state = CtStates::NEW;
                    }
                }
            }
            None => {
                ctx.conn = Some(Conn::new(pkt));
                ctx.conn_idx = None;
                ctx.reply_dir = false;
                let ipip = pkt.proto == crate::ruleset::Proto::IPIP;
                ctx.state = if carrier && ipip && self.opts.carrier_established {
                    CtStates::ESTABLISHED
                } else {
                    CtStates::NEW
                };
                if ctx.state == CtStates::ESTABLISHED {
                    // A live carrier flow: pretend it was confirmed long ago.
                    if let Some(c) = &mut ctx.conn {
                        c.seen_reply = true;
                    }
                    ctx.conn_idx = Some(usize::MAX);
                }
            }
        }
    }

    /// Conntrack confirmation at the end of POSTROUTING or INPUT.
    fn confirm(&mut self, ctx: &mut Ctx<'a, '_>) {
        let Some(mut c) = ctx.conn.take() else { return };
        // A RELATED packet confirms nothing of its connection's.
        if ctx.notrack || ctx.state == CtStates::RELATED {
            return;
        }
        if ctx.reply_dir {
            c.seen_reply = true;
        }
        match ctx.conn_idx {
            Some(i) if i < self.ct.conns.len() => {
                if let Some(slot) = self.ct.conns.get_mut(i) {
                    *slot = c;
                }
            }
            Some(_) => self.ct.conns.push(c),
            None => self.ct.conns.push(c),
        }
    }

    /// A packet arriving on `iif` with the mark it has (0 from a wire; a
    /// decapsulated packet keeps the carrier's, as `skb_scrub_packet` does
    /// within one namespace).
    pub fn receive(&mut self, mut pkt: Packet, iif: &str, carrier: bool, chooser: &mut dyn Chooser) -> Passage<'a> {
        let mut info = PassageInfo::default();
        let end = {
            let mut ctx = Ctx::new(&mut info);
            let end = self.receive_inner(&mut pkt, iif, carrier, &mut ctx, chooser);
            let steps = std::mem::take(&mut ctx.steps);
            let hooks = std::mem::take(&mut ctx.hooks);
            (end, steps, hooks)
        };
        let (end, steps, hooks) = end;
        passage(end, steps, hooks, info)
    }

    fn receive_inner(
        &mut self,
        pkt: &mut Packet,
        iif: &str,
        carrier: bool,
        ctx: &mut Ctx<'a, '_>,
        ch: &mut dyn Chooser,
    ) -> NodeEnd {
        // raw PREROUTING runs before conntrack.
        ctx.hooks.push(Hook::Prerouting);
        let v = self.run(TableName::Raw, Hook::Prerouting, pkt, ctx, Some(iif), None, false, ch);
        if let Some(end) = self.end_of(&v, Hook::Prerouting, TableName::Raw, &ctx.steps) {
            return end;
        }
        self.track(pkt, ctx, carrier);
        ctx.hooks.pop();
        if let HookEnd::Stop(end) =
            self.run_hook(Hook::Prerouting, &[TableName::Mangle, TableName::Nat], pkt, ctx, Some(iif), None, false, ch)
        {
            return end;
        }
        // Routing decision.
        if self.st.fib.is_local(pkt.dst) {
            return self.deliver(pkt, ctx, iif, ch);
        }
        let key = FlowKey { dst: pkt.dst, src: Some(pkt.src), mark: pkt.mark, iif: Some(iif), oif: None };
        let Some(hit) = self.st.fib.lookup(&key) else {
            let why = format!("no route to {} on {}", pkt.dst, self.node.name);
            return self.route_refusal(pkt, ctx, iif, RejectWith::NetUnreachable, why);
        };
        match hit.kind {
            RouteType::Unicast => {}
            // A `local` route of another table than `local` (a policy rule
            // chose it): delivered locally all the same.
            RouteType::Local => return self.deliver(pkt, ctx, iif, ch),
            RouteType::Blackhole => {
                return NodeEnd::Dropped(format!(
                    "dropped on {} by the blackhole route {}",
                    self.node.name,
                    route_str(&hit)
                ))
            }
            RouteType::Unreachable | RouteType::Prohibit => {
                // fib_props: an `unreachable` route fails with
                // EHOSTUNREACH, a `prohibit` route or rule with EACCES; an
                // `unreachable` rule (fib4_rule_action) with ENETUNREACH.
                let with = match (hit.kind, hit.route.is_some()) {
                    (RouteType::Prohibit, _) => RejectWith::AdminProhibited,
                    (_, true) => RejectWith::HostUnreachable,
                    (_, false) => RejectWith::NetUnreachable,
                };
                let why = format!("rejected on {} by the {:?} route {}", self.node.name, hit.kind, route_str(&hit));
                return self.route_refusal(pkt, ctx, iif, with, why);
            }
            other => return NodeEnd::Unknown(format!("route type {other:?} on {} is not modelled", self.node.name)),
        }
        if let Err(why) = self.st.fib.validate_source(pkt.src, pkt.dst, iif, hit.dev, pkt.mark) {
            return NodeEnd::Dropped(format!("dropped on {} by routing: {why}", self.node.name));
        }
        if let Some(key) = self.not_forwarding(iif) {
            return NodeEnd::Dropped(format!("dropped on {}: {key} is 0", self.node.name));
        }
        let Some(dev) = hit.dev.map(str::to_string) else {
            return NodeEnd::Unknown(format!("route {} on {} has no device", route_str(&hit), self.node.name));
        };
        let nexthop = hit.nexthop(pkt.dst);
        // ip_forward: a packet whose TTL would reach 0 is not forwarded
        // (an ICMP time exceeded tells the sender, before any redirect);
        // the others lose one before the FORWARD hook sees them.
        if !pkt.forward_ttl() {
            ctx.passage.refused = Some(Refused {
                packet: pkt.clone(),
                hook: Hook::Forward,
                by: RefusedBy::Hops,
                src: self.icmp_error_src(pkt, Some(iif)),
                conn: ctx.conn.clone().map(|c| (c, ctx.reply_dir)),
            });
            return NodeEnd::Rejected(format!(
                "not forwarded by {}: TTL {} (ICMP time exceeded)",
                self.node.name, pkt.ttl
            ));
        }
        if dev == iif && self.sends_redirect(pkt, iif, hit.gateway) {
            ctx.passage.redirect = Some(Redirect {
                packet: pkt.clone(),
                gateway: nexthop,
                conn: ctx.conn.clone().map(|c| (c, ctx.reply_dir)),
                confirmed: ctx.conn_idx.is_some(),
            });
        }
        if let HookEnd::Stop(end) = self.run_hook(
            Hook::Forward,
            &[TableName::Mangle, TableName::Filter, TableName::Security],
            pkt,
            ctx,
            Some(iif),
            Some(&dev),
            false,
            ch,
        ) {
            return end;
        }
        self.postrouting(pkt, ctx, &dev, nexthop, false, ch)
    }

    /// A received packet the routing decision refused (`ip_error`): the
    /// node answers with an ICMP destination unreachable of code `with`
    /// (a packet of its own, [`Self::send_refusal`]), unless it does not
    /// forward at all, when the packet is dropped without a word.
    fn route_refusal(&self, pkt: &Packet, ctx: &mut Ctx<'a, '_>, iif: &str, with: RejectWith, why: String) -> NodeEnd {
        if let Some(key) = self.not_forwarding(iif) {
            return NodeEnd::Dropped(format!("{why}; {key} is 0, so no ICMP error is sent"));
        }
        ctx.passage.refused = Some(Refused {
            packet: pkt.clone(),
            hook: Hook::Prerouting,
            by: RefusedBy::Route(with),
            src: self.icmp_error_src(pkt, Some(iif)),
            conn: ctx.conn.clone().map(|c| (c, ctx.reply_dir)),
        });
        let what = match with {
            RejectWith::NetUnreachable => "net unreachable",
            RejectWith::HostUnreachable => "host unreachable",
            _ => "administratively prohibited",
        };
        NodeEnd::Rejected(format!("{why} (ICMP {what})"))
    }

    /// The sysctl key that turns forwarding off for packets received by
    /// `iif` (`IN_DEV_FORWARD(in_dev)`: the input device's own
    /// `forwarding`), or `None` when the node forwards them.
    fn not_forwarding(&self, iif: &str) -> Option<String> {
        self.st.fib.sysctl().not_forwarding(iif)
    }

    /// The source of an ICMP error about `pkt` (`__icmp_send`): its
    /// destination when that is the node's own; for a packet that came in
    /// by `input_dev`, that device's address when
    /// `net.ipv4.icmp_errors_use_inbound_ifaddr` is on; else unspecified,
    /// for routing to choose.
    fn icmp_error_src(&self, pkt: &Packet, input_dev: Option<&str>) -> Ipv4Addr {
        if self.st.fib.is_local(pkt.dst) {
            return pkt.dst;
        }
        let inbound = self.st.fib.sysctl().int("net.ipv4.icmp_errors_use_inbound_ifaddr").unwrap_or(0) != 0;
        match input_dev {
            Some(dev) if inbound => self.st.fib.select_src(dev, pkt.src).unwrap_or(Ipv4Addr::UNSPECIFIED),
            _ => Ipv4Addr::UNSPECIFIED,
        }
    }

    /// Whether the kernel sends an ICMP redirect for `pkt`, which leaves by
    /// `dev`, the device it came in by, towards gateway `gw` (none: direct)
    /// (`__mkroute_input`, `ip_forward`): `send_redirects` is on for the
    /// device (`all` or its own), the route back to the sender is direct on
    /// that device (`fib_validate_source` says so by returning 1), and the
    /// medium is shared (`shared_media`, on by default) or the sender and
    /// the gateway share one of the device's subnets; never about an ICMP
    /// error.
    fn sends_redirect(&self, pkt: &Packet, dev: &str, gw: Option<Ipv4Addr>) -> bool {
        if pkt.is_icmp_error() {
            return false;
        }
        let sysctl = self.st.fib.sysctl();
        let conf = |key: &str| -> bool {
            let dev_v = sysctl.dev_int(dev, key).or_else(|| sysctl.int(&format!("net.ipv4.conf.default.{key}")));
            sysctl.int(&format!("net.ipv4.conf.all.{key}")).unwrap_or(1) != 0 || dev_v.unwrap_or(1) != 0
        };
        if !conf("send_redirects") {
            return false;
        }
        let back = FlowKey { dst: pkt.src, src: Some(pkt.dst), mark: 0, iif: Some(dev), oif: None };
        let direct = self
            .st
            .fib
            .lookup(&back)
            .is_some_and(|h| h.kind == RouteType::Unicast && h.dev == Some(dev) && h.gateway.is_none());
        if !direct {
            return false;
        }
        let onlink = || {
            let Some(i) = self.st.fib.interface(dev) else { return false };
            i.addrs.iter().any(|a| a.addr.contains(&pkt.src) && gw.is_none_or(|g| a.addr.contains(&g)))
        };
        conf("shared_media") || onlink()
    }

    /// The ICMP redirect a forwarded packet made the node send (see
    /// [`Redirect`]), as a packet of its own: OUTPUT and POSTROUTING,
    /// attached to the packet's connection (RELATED). When the node has a
    /// nat table, nat drops it at OUTPUT unless the connection was
    /// confirmed before without any translation (measured: raw and mangle
    /// OUTPUT count it, filter OUTPUT and POSTROUTING do not).
    pub fn send_redirect(&mut self, r: &Redirect, chooser: &mut dyn Chooser) -> Passage<'a> {
        let has_nat = self.st.tables.iter().any(|t| t.table.name == TableName::Nat);
        let translated = r.conn.as_ref().is_some_and(|(c, _)| c.snat || c.dnat);
        let how = SendAs {
            related: r.conn.clone().map(|(c, reply)| (c, !reply)),
            nat_drops: has_nat && r.conn.is_some() && (!r.confirmed || translated),
            ..SendAs::default()
        };
        self.send_as(r.message(), false, how, chooser)
    }

    fn postrouting(
        &mut self,
        pkt: &mut Packet,
        ctx: &mut Ctx<'a, '_>,
        dev: &str,
        nexthop: Ipv4Addr,
        local: bool,
        ch: &mut dyn Chooser,
    ) -> NodeEnd {
        ctx.nexthop = Some(nexthop);
        if let HookEnd::Stop(end) =
            self.run_hook(Hook::Postrouting, &[TableName::Mangle, TableName::Nat], pkt, ctx, None, Some(dev), local, ch)
        {
            return end;
        }
        self.confirm(ctx);
        NodeEnd::Out { packet: pkt.clone(), dev: dev.to_string(), nexthop }
    }

    /// Local delivery as the routing decision makes it: the source
    /// validated (the route back looked up from `lo`), then INPUT.
    fn deliver(&mut self, pkt: &mut Packet, ctx: &mut Ctx<'a, '_>, iif: &str, ch: &mut dyn Chooser) -> NodeEnd {
        if let Err(why) = self.st.fib.validate_source(pkt.src, pkt.dst, iif, None, pkt.mark) {
            return NodeEnd::Dropped(format!("dropped on {} by routing: {why}", self.node.name));
        }
        self.input(pkt, ctx, iif, ch)
    }

    fn input(&mut self, pkt: &mut Packet, ctx: &mut Ctx<'a, '_>, iif: &str, ch: &mut dyn Chooser) -> NodeEnd {
        if let HookEnd::Stop(end) = self.run_hook(
            Hook::Input,
            &[TableName::Mangle, TableName::Filter, TableName::Security, TableName::Nat],
            pkt,
            ctx,
            Some(iif),
            None,
            false,
            ch,
        ) {
            return end;
        }
        self.confirm(ctx);
        NodeEnd::Local(pkt.clone())
    }

    /// A packet generated on this node (its source may be unspecified:
    /// routing picks it).
    pub fn send(&mut self, pkt: Packet, carrier: bool, chooser: &mut dyn Chooser) -> Passage<'a> {
        self.send_as(pkt, carrier, SendAs::default(), chooser)
    }

    /// A packet generated on this node, `how` it relates to a connection
    /// (plain [`Self::send`], a refusal's answer, a redirect).
    fn send_as(&mut self, mut pkt: Packet, carrier: bool, how: SendAs, chooser: &mut dyn Chooser) -> Passage<'a> {
        let mut info = PassageInfo::default();
        let (end, steps, hooks) = {
            let mut ctx = Ctx {
                related: how.related,
                nat_src_new: how.nat_src_new,
                nat_drops: how.nat_drops,
                ..Ctx::new(&mut info)
            };
            let end = self.send_inner(&mut pkt, carrier, &mut ctx, chooser);
            (end, std::mem::take(&mut ctx.steps), std::mem::take(&mut ctx.hooks))
        };
        passage(end, steps, hooks, info)
    }

    /// The node's answer to a packet a REJECT or a failed route refused
    /// here (see [`Refused::answer`]), sent as a packet of its own: OUTPUT
    /// and POSTROUTING, attached to the refused packet's connection
    /// (RELATED, measured for both: `icmp_send` attaches every ICMP error
    /// to the connection of the packet it quotes). nat does not run its table for an ICMP error (conntrack
    /// only rewrites it by the connection's bindings); for a reset it runs
    /// POSTROUTING's, as the refused packet never reached a source
    /// translation (measured). `None` when the rule sends nothing.
    pub fn send_refusal(&mut self, r: &Refused, chooser: &mut dyn Chooser) -> Option<Passage<'a>> {
        let pkt = r.answer()?;
        let how = SendAs {
            related: r.conn.clone().map(|(c, reply)| (c, !reply)),
            nat_src_new: r.by == RefusedBy::Rule(RejectWith::TcpReset),
            ..SendAs::default()
        };
        Some(self.send_as(pkt, false, how, chooser))
    }

    fn route_out(&self, pkt: &Packet) -> Result<(RouteType, Option<String>, Ipv4Addr), NodeEnd> {
        let key = FlowKey { dst: pkt.dst, src: None, mark: pkt.mark, iif: None, oif: None };
        let Some(hit) = self.st.fib.lookup(&key) else {
            return Err(NodeEnd::Rejected(format!("no route to {} on {}", pkt.dst, self.node.name)));
        };
        match hit.kind {
            RouteType::Unicast | RouteType::Local => {}
            RouteType::Blackhole => {
                return Err(NodeEnd::Dropped(format!(
                    "dropped on {} by the blackhole route {}",
                    self.node.name,
                    route_str(&hit)
                )))
            }
            other => {
                return Err(NodeEnd::Rejected(format!(
                    "rejected on {} by the {other:?} route {}",
                    self.node.name,
                    route_str(&hit)
                )))
            }
        }
        Ok((hit.kind, hit.dev.map(str::to_string), hit.nexthop(pkt.dst)))
    }

    fn send_inner(&mut self, pkt: &mut Packet, carrier: bool, ctx: &mut Ctx<'a, '_>, ch: &mut dyn Chooser) -> NodeEnd {
        let (mut kind, mut dev, mut nexthop) = match self.route_out(pkt) {
            Ok(r) => r,
            Err(end) => return end,
        };
        if pkt.src.is_unspecified() {
            match self.st.fib.local_src(pkt.dst, pkt.mark) {
                Some(s) => pkt.src = s,
                None => return NodeEnd::Dropped(format!("{} has no source address for {}", self.node.name, pkt.dst)),
            }
        }
        ctx.hooks.push(Hook::Output);
        let v = self.run(TableName::Raw, Hook::Output, pkt, ctx, None, dev.as_deref(), true, ch);
        if let Some(end) = self.end_of(&v, Hook::Output, TableName::Raw, &ctx.steps) {
            return end;
        }
        self.track(pkt, ctx, carrier);
        ctx.hooks.pop();
        // ip_route_me_harder looks the route up again right after the
        // mangle table when it changed the mark or the destination, and
        // right after the nat table when it translated the destination; a
        // route that fails then drops the packet there. Nothing else does:
        // a mark set by raw or filter OUTPUT keeps the socket's route. Every
        // OUTPUT table matches `-o` against the socket's route's device
        // (the hook's state is set before it runs).
        let oif = dev.clone();
        for (tables, mark_reroutes) in [(&[TableName::Mangle][..], true), (&[TableName::Nat][..], false)] {
            let (mark0, dst0) = (pkt.mark, pkt.dst);
            if let HookEnd::Stop(end) = self.run_hook(Hook::Output, tables, pkt, ctx, None, oif.as_deref(), true, ch) {
                return end;
            }
            // The hook is listed once, by the last tables below.
            ctx.hooks.pop();
            if pkt.dst != dst0 || (mark_reroutes && pkt.mark != mark0) {
                match self.route_out(pkt) {
                    Ok((k, d, n)) => {
                        kind = k;
                        dev = d;
                        nexthop = n;
                    }
                    Err(end) => return end,
                }
            }
        }
        let last = [TableName::Filter, TableName::Security];
        if let HookEnd::Stop(end) = self.run_hook(Hook::Output, &last, pkt, ctx, None, oif.as_deref(), true, ch) {
            return end;
        }
        if kind == RouteType::Local {
            // Looped back: PREROUTING raw/mangle (nat does not run again), then INPUT.
            let dev = "lo";
            ctx.hooks.push(Hook::Prerouting);
            for t in [TableName::Raw, TableName::Mangle] {
                let v = self.run(t, Hook::Prerouting, pkt, ctx, Some(dev), None, false, ch);
                if let Some(end) = self.end_of(&v, Hook::Prerouting, t, &ctx.steps) {
                    return end;
                }
            }
            return self.input(pkt, ctx, dev, ch);
        }
        let Some(dev) = dev else {
            return NodeEnd::Unknown(format!("the route to {} on {} has no device", pkt.dst, self.node.name));
        };
        self.postrouting(pkt, ctx, &dev, nexthop, true, ch)
    }
}

fn passage(end: NodeEnd, steps: Vec<NodeStep<'_>>, hooks: Vec<Hook>, info: PassageInfo) -> Passage<'_> {
    Passage {
        steps,
        end,
        mark_at_nat_postrouting: info.mark_at_nat_postrouting,
        mark_after_nat_prerouting: info.mark_after_nat_prerouting,
        dnat: info.dnat,
        snat: info.snat,
        sport_random: info.sport_random,
        hooks,
        refused: info.refused,
        redirect: info.redirect,
    }
}

fn route_str(hit: &crate::fib::RouteHit<'_>) -> String {
    match hit.route {
        Some(r) => format!("{} ({}:{})", r.dst, r.loc.file, r.loc.line),
        None => "(from an ip rule)".into(),
    }
}
