//! The IR back to canonical iptables-save text.

use crate::ruleset::Ruleset;

/// Canonical iptables-save text of a ruleset.
pub fn iptables_save(rs: &Ruleset) -> String {
    let _ = rs;
    String::new()
}

/// The canonical `-A CHAIN ...` line of a rule.
pub fn rule_text(chain: &str, rule: &crate::ruleset::Rule) -> String {
    let _ = rule;
    format!("-A {chain}")
}
