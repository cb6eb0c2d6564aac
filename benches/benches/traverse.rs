//! Traversal benchmarks (being written).
fn main() {}
