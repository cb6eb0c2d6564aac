//! One-Service changes of a generated snapshot: the pull request a gate
//! sees most, used by the gate's tests and benchmarks.

use crate::GeneratedSnapshot;

/// The first TCP NodePort Service with endpoints in `save` (an
/// `iptables-save` text): its NodePort and its endpoint chains
/// (`KUBE-SEP-*`), found through `KUBE-NODEPORTS` → `KUBE-EXT-*` →
/// `KUBE-SVC-*`.
pub fn first_nodeport_endpoints(save: &str) -> Option<(u16, Vec<String>)> {
    let target = |line: &str| line.rsplit_once(" -j ").map(|(_, t)| t.trim().to_string());
    for np in save.lines().filter(|l| l.starts_with("-A KUBE-NODEPORTS -p tcp") && l.contains("-j KUBE-EXT-")) {
        let port: Option<u16> = np.split("--dport ").nth(1).and_then(|x| x.split_whitespace().next()?.parse().ok());
        let (Some(port), Some(ext)) = (port, target(np)) else { continue };
        let Some(svc) = save
            .lines()
            .filter(|l| l.starts_with(&format!("-A {ext} ")))
            .filter_map(target)
            .find(|t| t.starts_with("KUBE-SVC-"))
        else {
            continue;
        };
        let seps: Vec<String> = save
            .lines()
            .filter(|l| l.starts_with(&format!("-A {svc} ")))
            .filter_map(target)
            .filter(|t| t.starts_with("KUBE-SEP-"))
            .collect();
        if !seps.is_empty() {
            return Some((port, seps));
        }
    }
    None
}

/// `snap` with the first TCP NodePort Service's endpoints moved to the next
/// target port (its `KUBE-SEP-*` DNAT port + 1) on every node, and that
/// NodePort; `None` when no NodePort Service has endpoints.
pub fn one_service_changed(snap: &GeneratedSnapshot) -> Option<(u16, GeneratedSnapshot)> {
    let (port, seps) = first_nodeport_endpoints(&snap.nodes.first()?.iptables_save)?;
    let mut out = snap.clone();
    for n in &mut out.nodes {
        let lines: Vec<String> = n
            .iptables_save
            .lines()
            .map(|l| {
                let ours = l.contains("-j DNAT") && seps.iter().any(|s| l.starts_with(&format!("-A {s} ")));
                match (ours, l.rsplit_once(':')) {
                    (true, Some((head, p))) => match p.trim().parse::<u16>() {
                        Ok(p) => format!("{head}:{}", p.wrapping_add(1)),
                        Err(_) => l.to_string(),
                    },
                    _ => l.to_string(),
                }
            })
            .collect();
        n.iptables_save = lines.join("\n") + "\n";
    }
    Some((port, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{generate, Spec};

    #[test]
    fn the_change_moves_one_services_endpoints_and_nothing_else() {
        let g = generate(&Spec::with_services(30));
        let (port, c) = one_service_changed(&g).unwrap_or_else(|| unreachable!("30 Services have a NodePort"));
        assert!(port >= 30000);
        for (x, y) in g.nodes.iter().zip(&c.nodes) {
            let changed: Vec<(&str, &str)> =
                x.iptables_save.lines().zip(y.iptables_save.lines()).filter(|(a, b)| a != b).collect();
            assert!(!changed.is_empty());
            assert!(changed.iter().all(|(a, b)| a.contains("-j DNAT") && b.contains("-j DNAT")), "{changed:?}");
            assert_eq!(x.iptables_save.lines().count(), y.iptables_save.lines().count());
        }
    }
}
