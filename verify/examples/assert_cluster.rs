//! What a platform team's own test suite does with natpath as a library:
//! load the snapshot of its cluster, assert on the path of the packets it
//! cares about, and demand that the invariant catalog holds.
//!
//! In your repository, add `natpath-verify` as a dev-dependency and put the
//! body of `main` in a `#[test]`. Here it runs on the seed cluster:
//!
//! ```sh
//! cargo run --release -p natpath-verify --example assert_cluster [SNAPSHOT]
//! ```

use natpath_verify::trace::Outcome as Fate;
use natpath_verify::{check_all, load, trace, Outcome};
use std::process::ExitCode;

fn main() -> ExitCode {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../corpus/seed-ipip-remote").to_string());
    match run(&dir) {
        Ok(()) => {
            println!("{dir}: every assertion holds");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{dir}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: &str) -> Result<(), Box<dyn std::error::Error>> {
    let snap = load(dir)?;

    // A client outside the cluster reaches nginx through node1's NodePort,
    // whichever endpoint kube-proxy picks, and the answer comes back from
    // the address it asked.
    let t = trace(&snap, "client", "10.0.0.51:32220")?;
    for b in &t.branches {
        if b.outcome != Fate::Delivered {
            return Err(format!(
                "branch {} ends {:?}: {}",
                b.probability,
                b.outcome,
                b.reason.clone().unwrap_or_default()
            )
            .into());
        }
        let answer = b.reply.as_ref().and_then(|r| r.seen_by_client.as_ref()).map(|s| s.src.as_str());
        if answer != Some("10.0.0.51:32220") {
            return Err(format!("branch {}: the client sees the answer from {answer:?}", b.probability).into());
        }
    }

    // Every invariant of the catalog holds for every packet.
    for v in check_all(&snap) {
        match &v.outcome {
            Outcome::Holds => println!("{:<24} holds", v.name),
            Outcome::Violated(cx) => return Err(format!("{} is violated: {}", v.name, cx.summary).into()),
            Outcome::Unknown(why) => return Err(format!("{} is unknown: {why}", v.name).into()),
        }
    }
    Ok(())
}
