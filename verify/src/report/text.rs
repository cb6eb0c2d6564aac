//! A trace as text that reads like the seed blog's walk: per branch, per
//! node and packet, every rule that took effect with its hook, table, chain,
//! number, text and effect, and the packet after each NAT.

use natpath_model::trace::{Branch, Outcome, PacketKind, Trace};
use std::fmt::Write;

fn kind_name(k: PacketKind) -> &'static str {
    match k {
        PacketKind::Forward => "first packet",
        PacketKind::ForwardOuter => "first packet, tunnel carrier",
        PacketKind::Reply => "reply",
        PacketKind::ReplyOuter => "reply, tunnel carrier",
        PacketKind::Refusal => "refusal (the node's own answer)",
        PacketKind::RefusalOuter => "refusal, tunnel carrier",
        PacketKind::Redirect => "ICMP redirect (the node's own)",
    }
}

/// The outcome as the JSON contract spells it.
pub fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Delivered => "delivered",
        Outcome::Dropped => "dropped",
        Outcome::Rejected => "rejected",
        Outcome::ReplyLost => "reply-lost",
        Outcome::Loop => "loop",
        Outcome::Unknown => "unknown",
    }
}

fn branch(out: &mut String, i: usize, n: usize, b: &Branch) {
    let _ = writeln!(out, "branch {}/{} (probability {}): {}", i + 1, n, b.probability, outcome_name(b.outcome));
    let mut last: Option<(String, PacketKind)> = None;
    for s in &b.steps {
        let (Some(hook), Some(table)) = (s.hook, s.table) else {
            // A router hop: a step of its own, between two node passages.
            let at = s.router.as_ref().map(|r| format!(" ({})", r.address)).unwrap_or_default();
            let _ = writeln!(out, "  at router {}{at} ({}):", s.node, kind_name(s.packet));
            let _ = writeln!(out, "    route {}: {}", s.text, s.effect);
            last = None;
            continue;
        };
        let key = (s.node.clone(), s.packet);
        if last.as_ref() != Some(&key) {
            let _ = writeln!(out, "  on {} ({}):", s.node, kind_name(s.packet));
            last = Some(key);
        }
        let rule = match (s.rule, s.chain.as_str()) {
            (Some(r), _) => format!(" rule {r}"),
            // Policies and conntrack rewrites say what they are in the effect.
            (None, _) => String::new(),
        };
        let _ = writeln!(out, "    {:<11} {:<7} {}{}: {}", hook.chain(), table.as_str(), s.chain, rule, s.effect);
        if !s.text.is_empty() {
            let _ = writeln!(out, "        {}", s.text);
        }
        if let Some(p) = &s.packet_after {
            let _ = writeln!(out, "        packet now: {p}");
        }
    }
    if let Some(d) = &b.delivered_to {
        let on = d.node.as_ref().map(|n| format!(" on {n}")).unwrap_or_default();
        let _ = writeln!(out, "  delivered to {} {}{} ({})", d.kind, d.name, on, d.address);
    }
    if let Some(s) = &b.seen_by_destination {
        let random = if b.sport_random { " (source port chosen at random by --random-fully)" } else { "" };
        let _ = writeln!(out, "  the destination sees {} -> {}{}", s.src, s.dst, random);
    }
    if let Some(r) = &b.refusal {
        let what = match r.kind.as_deref() {
            Some(k) if k.starts_with("icmp ") => format!("an ICMP error ({})", k.trim_start_matches("icmp ")),
            _ => "a TCP reset".to_string(),
        };
        match &r.seen_by_client {
            Some(s) => {
                let _ = writeln!(out, "  refused with {what}: the sender sees {} -> {}", s.src, s.dst);
            }
            None => {
                let _ = writeln!(out, "  refused with {what}, which is {}", outcome_name(r.outcome));
                if let Some(why) = &r.reason {
                    let _ = writeln!(out, "    {why}");
                }
            }
        }
    }
    if let Some(r) = &b.reply {
        match &r.seen_by_client {
            Some(s) => {
                let _ = writeln!(out, "  reply: {}: the sender sees {} -> {}", outcome_name(r.outcome), s.src, s.dst);
            }
            None => {
                let _ = writeln!(out, "  reply: {}", outcome_name(r.outcome));
            }
        }
        if let Some(why) = &r.reason {
            let _ = writeln!(out, "    {why}");
        }
    }
    if let Some(why) = &b.reason {
        let _ = writeln!(out, "  {why}");
    }
}

/// Render a trace as text.
pub fn trace(t: &Trace) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "trace {} {} -> {} (sport {}{})",
        natpath_model::packet::proto_name(t.probe.proto),
        t.probe.from,
        t.probe.to,
        t.probe.sport,
        t.probe.via.as_ref().map(|v| format!(", handed to {v}")).unwrap_or_default()
    );
    let n = t.branches.len();
    for (i, b) in t.branches.iter().enumerate() {
        branch(&mut out, i, n, b);
    }
    for note in &t.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}
