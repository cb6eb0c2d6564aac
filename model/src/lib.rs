//! natpath's model: what a Kubernetes node's netfilter, routing and conntrack
//! do to a packet, read from the node's own dumps.
//!
//! The data flow is dump text -> IR -> model:
//! - [`parse`] reads `iptables-save` (and `iptables -S`, kube-proxy's restore
//!   input, greps of them), `ipset save`/`list`, `ip route`, `ip addr`,
//!   `ip rule` and `sysctl` into the typed IR of [`ruleset`] and
//!   [`netstate`]; [`snapshot`] loads a snapshot directory (docs/snapshot-format.md)
//!   with its [`cluster`] manifest;
//! - [`print`] writes the IR back as canonical iptables-save text.
//!
//! ```
//! use natpath_model::parse::iptables;
//! let text = "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-MARK-MASQ - [0:0]\n\
//!             -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\nCOMMIT\n";
//! let rs = iptables::parse(text, "example", &iptables::Options::default()).unwrap();
//! assert_eq!(rs.rule_count(), 1);
//! let printed = natpath_model::print::iptables_save(&rs);
//! assert!(printed.contains("-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000"));
//! ```

pub mod cluster;
pub mod conntrack;
pub mod edge;
pub mod error;
pub mod fib;
pub mod hash;
pub mod input;
pub mod intent;
pub mod loc;
pub mod netstate;
pub mod node;
pub mod packet;
pub mod parse;
pub mod print;
pub mod router;
pub mod ruleset;
pub mod snapshot;
pub mod trace;
pub mod traverse;
pub mod walk;

pub use error::{Internal, ParseError, ParseErrors};
pub use loc::Loc;
