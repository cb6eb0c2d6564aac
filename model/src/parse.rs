//! Parsers from the text of standard tools to the IR.
//!
//! Contract (every parser): never panics on any input, bytes included;
//! every error has a [`crate::Loc`]; all errors of a file are reported, not
//! just the first.

pub mod detect;
pub mod ipaddr;
pub mod iproute;
pub mod iprule;
pub mod ipset;
pub mod iptables;
pub mod ss;
pub mod sysctl;
