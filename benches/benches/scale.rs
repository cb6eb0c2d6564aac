//! Scale benchmarks (being written).
fn main() {}
