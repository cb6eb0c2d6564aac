//! Where the kernel lets a match or target be used: some are bound to a
//! table (`-m rpfilter` to raw and mangle) or to hooks (`-j MASQUERADE`
//! to POSTROUTING), and the kernel refuses a rule that breaks this when
//! the table is loaded, also in a user chain reached from a hook it may
//! not be used in (`RULE_APPEND failed (Invalid argument)`). The bounds are
//! those of the kernel's xt modules (their `.hooks`, `.table` and
//! `checkentry`), checked against iptables-restore 1.8.9 on nf_tables in
//! verify/tests/restore_agreement.rs.

use crate::ruleset::{Match, Rule, TableName, Target};

/// A set of netfilter hooks, one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Hooks(u8);

const PRE: u8 = 1;
const IN: u8 = 2;
const FWD: u8 = 4;
const OUT: u8 = 8;
const POST: u8 = 16;

/// The hooks in the order packets meet them, with their chain names.
const NAMES: [(u8, &str); 5] =
    [(PRE, "PREROUTING"), (IN, "INPUT"), (FWD, "FORWARD"), (OUT, "OUTPUT"), (POST, "POSTROUTING")];

impl Hooks {
    /// No hook.
    pub(crate) const NONE: Hooks = Hooks(0);

    /// The hook of built-in chain `name`.
    pub(crate) fn of_builtin(name: &str) -> Hooks {
        Hooks(NAMES.iter().find(|(_, n)| *n == name).map_or(0, |(b, _)| *b))
    }

    /// Both sets.
    pub(crate) fn union(self, other: Hooks) -> Hooks {
        Hooks(self.0 | other.0)
    }

    /// The hooks in both sets.
    pub(crate) fn meet(self, other: Hooks) -> Hooks {
        Hooks(self.0 & other.0)
    }

    /// Whether the set is empty.
    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The chain names of the hooks, in packet order.
    pub(crate) fn names(self) -> impl Iterator<Item = &'static str> {
        NAMES.iter().filter(move |(b, _)| self.0 & b != 0).map(|(_, n)| *n)
    }
}

/// All five hooks.
const ALL: u8 = PRE | IN | FWD | OUT | POST;

/// The hooks match `m` may be used in, when the kernel bounds them.
fn match_bound(m: &Match) -> Option<(&'static str, u8)> {
    Some(match m {
        Match::Rpfilter { .. } => ("`-m rpfilter`", PRE),
        Match::Socket { .. } => ("`-m socket`", PRE | IN),
        Match::Owner(_) => ("`-m owner`", OUT | POST),
        Match::Mac(_) => ("`-m mac`", PRE | IN | FWD),
        Match::Addrtype(a) if a.limit_iface_in => ("`-m addrtype --limit-iface-in`", PRE | IN | FWD),
        Match::Addrtype(a) if a.limit_iface_out => ("`-m addrtype --limit-iface-out`", FWD | OUT | POST),
        Match::Policy(p) if p.dir_in => ("`-m policy --dir in`", PRE | IN | FWD),
        Match::Policy(_) => ("`-m policy --dir out`", FWD | OUT | POST),
        // xt_physdev: the output side of a packet that is not known to be
        // bridged is refused where the host sends (OUTPUT).
        Match::Physdev(p) if (p.physdev_out.is_some() || p.is_out.is_some()) && p.is_bridged != Some(true) => {
            ("`-m physdev --physdev-out` or `--physdev-is-out` without `--physdev-is-bridged`", ALL & !OUT)
        }
        // xt_cgroup registers LOCAL_IN, LOCAL_OUT and POST_ROUTING only:
        // nf_tables refuses it elsewhere when the rule is loaded (measured
        // with iptables-restore 1.8.9: `RULE_APPEND failed (Invalid
        // argument)` in FORWARD).
        Match::Unsupported { module, .. } if module == "cgroup" => ("`-m cgroup`", IN | OUT | POST),
        _ => return None,
    })
}

/// The hooks target `t` may be used in, when the kernel bounds them.
fn target_bound(t: &Target) -> Option<(&'static str, u8)> {
    Some(match t {
        Target::Dnat { .. } => ("`-j DNAT`", PRE | OUT),
        Target::Redirect { .. } => ("`-j REDIRECT`", PRE | OUT),
        Target::Snat { .. } => ("`-j SNAT`", IN | POST),
        Target::Masquerade { .. } => ("`-j MASQUERADE`", POST),
        Target::Reject(_) => ("`-j REJECT`", IN | FWD | OUT),
        Target::Tcpmss(None) => ("`-j TCPMSS --clamp-mss-to-pmtu`", FWD | OUT | POST),
        Target::Unsupported { name, .. } if name == "TPROXY" => ("`-j TPROXY`", PRE),
        _ => return None,
    })
}

/// What one rule may not meet: the matches and target of `rule` that the
/// kernel binds to hooks, each with the hooks it refuses them in.
pub(crate) fn refused(rule: &Rule) -> impl Iterator<Item = (&'static str, Hooks)> + '_ {
    rule.matches
        .iter()
        .filter_map(match_bound)
        .chain(rule.target.iter().filter_map(target_bound))
        .map(|(what, allowed)| (what, Hooks(ALL & !allowed)))
}

/// The tables a match of `rule` is bound to, when not `table`: `(what,
/// the tables it may be used in)`.
pub(crate) fn wrong_table(rule: &Rule, table: TableName) -> Option<(&'static str, &'static str)> {
    let rpfilter = rule.matches.iter().any(|m| matches!(m, Match::Rpfilter { .. }));
    (rpfilter && !matches!(table, TableName::Raw | TableName::Mangle)).then_some(("`-m rpfilter`", "`raw` or `mangle`"))
}

/// iptables refuses `-o` in a chain named PREROUTING or INPUT and `-i` in
/// one named OUTPUT or POSTROUTING (`Can't use -o with INPUT`), whatever
/// the table: the option it refuses, if any.
pub(crate) fn wrong_iface(chain: &str, rule: &Rule) -> Option<&'static str> {
    match chain {
        "PREROUTING" | "INPUT" if rule.out_iface.is_some() => Some("-o"),
        "OUTPUT" | "POSTROUTING" if rule.in_iface.is_some() => Some("-i"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_name_their_chains_in_packet_order() {
        let h = Hooks::of_builtin("POSTROUTING").union(Hooks::of_builtin("PREROUTING"));
        assert_eq!(h.names().collect::<Vec<_>>(), ["PREROUTING", "POSTROUTING"]);
        assert!(Hooks::of_builtin("KUBE-SERVICES").is_empty());
        assert!(h.meet(Hooks::of_builtin("INPUT")).is_empty());
    }
}
