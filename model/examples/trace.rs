//! Trace a probe with the model alone: `cargo run -p natpath-model --example trace SNAPSHOT FROM IP:PORT`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let snap = natpath_model::snapshot::load(std::path::Path::new(&a[1])).unwrap_or_else(|e| panic!("{e}"));
    let p = natpath_model::walk::probe(&snap, &a[2], &a[3], natpath_model::ruleset::Proto::TCP, 40000).unwrap();
    let t = natpath_model::walk::trace(&snap, &p, &Default::default()).unwrap();
    for b in &t.branches {
        println!(
            "p={} {:?} {:?} seen={:?} reply={:?}",
            b.probability, b.outcome, b.reason, b.seen_by_destination, b.reply
        );
        for s in &b.steps {
            println!(
                "  {} {:?} {} {} {} {:?} {}  {:?}",
                s.node,
                s.packet,
                s.hook.map(|h| h.to_string()).unwrap_or_else(|| "router".into()),
                s.table.map(|t| t.as_str()).unwrap_or(""),
                if s.router.is_some() { &s.text } else { &s.chain },
                s.rule,
                s.effect,
                s.packet_after
            );
        }
    }
}
