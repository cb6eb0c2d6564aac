//! Benchmarks support: the kube-proxy-shaped ruleset generator.
