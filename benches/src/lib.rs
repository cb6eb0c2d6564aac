//! natpath's criterion benchmarks live in `benches/`: parse, traverse, scale,
//! check and kernel. This library is empty; the snapshots they measure come
//! from `natpath-corpus` (the generator) and the repository's `corpus/`.
