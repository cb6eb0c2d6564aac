//! Report writers: what a person or a CI system reads.

pub mod dot;
pub mod summary;
pub mod text;
