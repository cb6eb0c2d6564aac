//! natpath's generator of snapshots shaped like what kube-proxy v1.28
//! (iptables mode) and Calico (IPIP or VXLAN) leave on real nodes, at any
//! scale, plus the netns helper the kernel tests and benchmarks share.
//!
//! Contract: [`generate`] is a pure function of its [`Spec`] (a seed makes
//! it reproducible) and writes every dump the way the standard tools print
//! it (docs/snapshot-format.md); kube-proxy's rules are rendered as v1.28.7 renders them
//! (chain names hashed as kube-proxy hashes them, see [`names`]), so that
//! for a Services file [`from_services_json`] reproduces kube-proxy's own
//! output line for line (`tests/generator.rs` pins this against the
//! reference dump). Calico's rules follow the seed's captured nodes (see
//! [`calico`] for where ids differ from a live felix).
//!
//! The data flow: [`Spec`] → [`spec::build`] → declared [`cluster::Cluster`]
//! → per node [`kube_proxy`] + [`calico`] rules into a [`save::Ruleset`] and
//! [`netdump`] text → [`GeneratedSnapshot`] → [`write_snapshot`].
//!
//! ```
//! use natpath_corpus::{generate, Spec};
//! let snap = generate(&Spec::with_services(20));
//! assert_eq!(snap.nodes.len(), 3);
//! let node1 = snap.node("node-1").unwrap();
//! assert!(node1.iptables_save.contains(":KUBE-SVC-TCOU7JCQXEZGVUNU - [0:0]"));
//! assert!(node1.ip_route.contains("dev tunl0 proto bird onlink"));
//! ```

pub mod calico;
pub mod change;
pub mod cluster;
pub mod kube_proxy;
pub mod names;
pub mod netdump;
pub mod netns;
pub mod rng;
pub mod save;
pub mod services_json;
pub mod snapshot;
pub mod spec;

pub use change::one_service_changed;
pub use cluster::Encap;
pub use services_json::ServicesError;
pub use snapshot::{from_services_json, generate, kube_proxy_save, write_snapshot, GeneratedSnapshot, NodeDumps};
pub use spec::{Mix, Spec};
