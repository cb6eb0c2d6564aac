//! What a table can do to a packet at one hook, summarized over every rule
//! its built-in chain reaches: which bits of the mark and of the connection
//! mark some rule may write, and whether one may untrack the packet. A
//! summary exists only when every target reached has an effect the IR
//! describes and that is one of those (or a verdict): a NAT target, one
//! natpath does not model, a jump to a missing chain or calls nested deeper
//! than the bound leave the table without one.
//!
//! Use: an over-approximation of a table run that lets every path through
//! and frees the bits the summary names ([`Effects::apply`]). Every path the
//! kernel takes through the table, whichever rules match, ends with the
//! packet changed at most there; so a property of the ways out that no
//! path of the over-approximation breaks holds of the exact passage too.
//! Matches are not looked at, which is why a rule whose match natpath cannot
//! express does not stand in the way.

use crate::encode::packet::{bv32, bv_and, bv_xor, ite_bool, note_kept, Flow};
use natpath_model::packet::Hook;
use natpath_model::ruleset::{Chain, ConnmarkOp, Target};
use std::collections::HashMap;
use z3::ast::{Bool, BV};

/// The effects of one table at one hook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Effects {
    /// Bits of the packet mark some rule may change.
    pub mark: u32,
    /// Bits of the connection mark some rule may change.
    pub ctmark: u32,
    /// Some rule may untrack the packet (`NOTRACK`, `CT --notrack`).
    pub notrack: bool,
}

impl Effects {
    /// The summary at `hook` of the table whose chains `idx` holds by name
    /// (`None`: some rule reached has an
    /// effect outside the summary's vocabulary, or the chains reached nest
    /// deeper than `max_depth`). A table without the hook's chain changes
    /// nothing.
    pub fn of(idx: &natpath_model::hash::FastMap<&str, &Chain>, hook: Hook, max_depth: usize) -> Option<Effects> {
        let Some(start) = idx.get(hook.chain()).copied() else { return Some(Effects::default()) };
        let mut eff = Effects::default();
        // Depth-first over the chains reached, each chain once, with the
        // longest call depth at which it is reached bounded as the encoding
        // bounds it (the parser rejects loops, so this ends).
        let mut depth_of: HashMap<&str, usize> = HashMap::new();
        let mut stack: Vec<(&Chain, usize)> = vec![(start, 0)];
        while let Some((chain, depth)) = stack.pop() {
            match depth_of.get(chain.name.as_str()) {
                Some(&d) if d >= depth => continue,
                _ => {
                    depth_of.insert(chain.name.as_str(), depth);
                }
            }
            for rule in &chain.rules {
                let Some(t) = &rule.target else { continue };
                match t {
                    Target::Accept | Target::Drop | Target::Return | Target::Reject(_) => {}
                    Target::Jump(name) | Target::Goto(name) => {
                        let next = idx.get(name.as_str()).copied()?;
                        if depth >= max_depth {
                            return None;
                        }
                        stack.push((next, depth + 1));
                    }
                    Target::Mark { value, mask } => eff.mark |= value | mask,
                    Target::Connmark(op) => match *op {
                        ConnmarkOp::SetXmark { value, mask } => eff.ctmark |= value | mask,
                        ConnmarkOp::Save { nfmask, ctmask } => eff.ctmark |= nfmask | ctmask,
                        ConnmarkOp::Restore { nfmask, ctmask } => eff.mark |= nfmask | ctmask,
                    },
                    Target::Ct(c) if c.notrack => eff.notrack = true,
                    Target::Notrack => eff.notrack = true,
                    Target::Ct(_)
                    | Target::Log(_)
                    | Target::Nflog(_)
                    | Target::Trace
                    | Target::Checksum
                    | Target::Tcpmss(_) => {}
                    Target::Dnat { .. }
                    | Target::Snat { .. }
                    | Target::Masquerade { .. }
                    | Target::Redirect { .. }
                    | Target::Unsupported { .. } => return None,
                }
            }
        }
        Some(eff)
    }

    /// The over-approximated run: the flow goes on whole, with the bits the
    /// summary names free (fresh constants, one per call) and every other
    /// bit kept.
    pub fn apply(&self, mut flow: Flow) -> Flow {
        let st = &mut flow.state;
        if self.mark != 0 {
            st.pkt.mark = free_bits(&st.pkt.mark, self.mark);
        }
        if self.ctmark != 0 {
            std::rc::Rc::make_mut(&mut st.ct).ctmark = free_bits(&st.ct.ctmark, self.ctmark);
        }
        if self.notrack {
            st.notrack = ite_bool(&crate::encode::fresh_bool(), &Bool::from_bool(true), &st.notrack);
        }
        flow
    }
}

/// `x` with the bits `mask` replaced by a fresh constant's.
fn free_bits(x: &BV, mask: u32) -> BV {
    let kept = bv_and(x, &bv32(!mask));
    let fresh = bv_and(&crate::encode::fresh_bv(32), &bv32(mask));
    let r = bv_xor(&kept, &fresh);
    note_kept(&r, x, !mask);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use natpath_model::parse::iptables::{parse, Options};
    use natpath_model::ruleset::{Ruleset, TableName};

    fn summary(rs: &Ruleset, t: TableName, hook: Hook, max_depth: usize) -> Option<Effects> {
        let table = rs.tables.iter().find(|x| x.name == t).expect("table");
        let idx: natpath_model::hash::FastMap<&str, &Chain> =
            table.chains.iter().map(|c| (c.name.as_str(), c)).collect();
        Effects::of(&idx, hook, max_depth)
    }

    fn rules(text: &str) -> Ruleset {
        parse(text, "effects-test", &Options { lenient: true, table: None }).expect("parses")
    }

    /// The seed's node with a remote endpoint: Calico's filter and mangle
    /// chains write their own bits (0xf0000), never kube-proxy's 0x4000.
    #[test]
    fn calico_tables_write_calico_bits_only() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../corpus/seed-ipip-remote/nodes/node1/iptables-save");
        let text = std::fs::read_to_string(dir).expect("corpus dump");
        let rs = rules(&text);
        let fwd = summary(&rs, TableName::Filter, Hook::Forward, 64).expect("filter FORWARD has a summary");
        assert_ne!(fwd.mark, 0, "Calico's FORWARD chains mark");
        assert_eq!(fwd.mark & 0x4000, 0, "{:#x}", fwd.mark);
        assert_eq!(fwd.mark & !0xffff_0000, 0, "{:#x}", fwd.mark);
        assert!(!fwd.notrack);
        let raw = summary(&rs, TableName::Raw, Hook::Prerouting, 64).expect("raw PREROUTING has a summary");
        assert_eq!(raw.mark & 0x4000, 0, "{:#x}", raw.mark);
    }

    #[test]
    fn marks_connmarks_and_notrack_are_summed_over_the_chains_reached() {
        let rs = rules(
            "*mangle\n:PREROUTING ACCEPT [0:0]\n:A - [0:0]\n:B - [0:0]\n:C - [0:0]\n\
             -A PREROUTING -j A\n-A A -p tcp -j MARK --set-xmark 0x1/0xff\n-A A -g B\n\
             -A B -j CONNMARK --save-mark --nfmask 0x100 --ctmask 0x100\n-A B -j MARK --xor-mark 0x2000\n\
             -A C -j MARK --set-xmark 0x80000000/0x80000000\nCOMMIT\n\
             *raw\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p udp -j CT --notrack\nCOMMIT\n",
        );
        let e = summary(&rs, TableName::Mangle, Hook::Prerouting, 64).expect("summary");
        // C is never reached: its bit is not in the summary.
        assert_eq!(e, Effects { mark: 0x20ff, ctmark: 0x100, notrack: false });
        let r = summary(&rs, TableName::Raw, Hook::Prerouting, 64).expect("summary");
        assert_eq!(r, Effects { mark: 0, ctmark: 0, notrack: true });
        // A hook without its chain in the table changes nothing.
        assert_eq!(summary(&rs, TableName::Raw, Hook::Forward, 64), Some(Effects::default()));
    }

    #[test]
    fn unknown_effects_leave_no_summary() {
        let unsupported = rules(
            "*mangle\n:PREROUTING ACCEPT [0:0]\n:A - [0:0]\n-A PREROUTING -j A\n\
             -A A -p tcp -j TPROXY --on-port 1 --tproxy-mark 0x1/0x1\nCOMMIT\n",
        );
        assert_eq!(summary(&unsupported, TableName::Mangle, Hook::Prerouting, 64), None);
        let deep =
            rules("*filter\n:FORWARD ACCEPT [0:0]\n:A - [0:0]\n:B - [0:0]\n-A FORWARD -j A\n-A A -j B\nCOMMIT\n");
        assert!(summary(&deep, TableName::Filter, Hook::Forward, 2).is_some());
        assert_eq!(summary(&deep, TableName::Filter, Hook::Forward, 1), None);
    }
}
