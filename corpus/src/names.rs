//! Names that kube-proxy and Calico derive from hashes: kube-proxy's service,
//! local, external, firewall and endpoint chains, Calico's workload veth
//! names and Calico-style rule ids.
//!
//! Contract:
//! - kube-proxy v1.28 (`pkg/proxy/iptables`): a service port's chains are
//!   `KUBE-SVC-`, `KUBE-SVL-`, `KUBE-EXT-`, `KUBE-FW-` followed by the first
//!   16 characters of the standard (RFC 4648, `A-Z2-7`) base32 encoding of
//!   SHA-256 over `<namespace>/<name>[:<port name>]` followed by the
//!   lower-case protocol; an endpoint chain `KUBE-SEP-` hashes the same
//!   string followed by the endpoint's `ip:port`. These are byte-identical to
//!   kube-proxy's (the tests pin well-known ones such as
//!   `KUBE-SVC-TCOU7JCQXEZGVUNU` for `kube-system/kube-dns:dns` over UDP).
//! - Calico (libcalico-go `VethNameForWorkload`): a pod's host-side veth is
//!   `cali` followed by the first 11 hex digits of SHA-1 over
//!   `<namespace>.<pod name>`; byte-identical to Calico's.
//! - Calico rule ids (`cali:` comments): felix hashes each rule with SHA-224,
//!   seeded with the chain name and chained through the previous rule's
//!   hash, and prints the first 16 characters of unpadded URL-safe base64.
//!   We apply that scheme to our own rendering of the rule, so ids are stable,
//!   unique per chain position and change when a rule changes, as felix's do,
//!   but they are not byte-identical to felix's (felix hashes its internal
//!   rendering, not the iptables-save text).

use sha1::Sha1;
use sha2::{Digest, Sha224, Sha256};

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const HEX: &[u8; 16] = b"0123456789abcdef";

/// One character of an alphabet (`?` for an index outside it, which the
/// callers' masks rule out).
fn pick(alphabet: &[u8], index: u32) -> char {
    char::from(alphabet.get(index as usize).copied().unwrap_or(b'?'))
}

/// Standard base32 (RFC 4648 alphabet), the first `len` characters only.
fn base32_prefix(bytes: &[u8], len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 && out.len() < len {
            bits -= 5;
            out.push(pick(BASE32, (acc >> bits) & 31));
        }
        acc &= (1 << bits) - 1;
        if out.len() >= len {
            break;
        }
    }
    out
}

/// Unpadded URL-safe base64, the first `len` characters only.
fn base64url_prefix(bytes: &[u8], len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 && out.len() < len {
            bits -= 6;
            out.push(pick(BASE64URL, (acc >> bits) & 63));
        }
        acc &= (1 << bits) - 1;
        if out.len() >= len {
            break;
        }
    }
    if out.len() < len && bits > 0 {
        out.push(pick(BASE64URL, (acc << (6 - bits)) & 63));
    }
    out
}

/// The 16-character hash kube-proxy appends to `KUBE-SVC-` and friends.
pub fn port_proto_hash(svc_port_name: &str, protocol: &str) -> String {
    let mut h = Sha256::new();
    h.update(svc_port_name.as_bytes());
    h.update(protocol.as_bytes());
    base32_prefix(&h.finalize(), 16)
}

/// `KUBE-SVC-…`: the service port's cluster-policy chain.
pub fn svc_chain(svc_port_name: &str, protocol: &str) -> String {
    format!("KUBE-SVC-{}", port_proto_hash(svc_port_name, protocol))
}

/// `KUBE-SVL-…`: the service port's local-policy chain.
pub fn svl_chain(svc_port_name: &str, protocol: &str) -> String {
    format!("KUBE-SVL-{}", port_proto_hash(svc_port_name, protocol))
}

/// `KUBE-EXT-…`: the service port's external-destinations chain.
pub fn ext_chain(svc_port_name: &str, protocol: &str) -> String {
    format!("KUBE-EXT-{}", port_proto_hash(svc_port_name, protocol))
}

/// `KUBE-FW-…`: the service port's loadBalancerSourceRanges chain.
pub fn fw_chain(svc_port_name: &str, protocol: &str) -> String {
    format!("KUBE-FW-{}", port_proto_hash(svc_port_name, protocol))
}

/// `KUBE-SEP-…`: one endpoint (`ip:port`) of a service port.
pub fn sep_chain(svc_port_name: &str, protocol: &str, endpoint: &str) -> String {
    let mut h = Sha256::new();
    h.update(svc_port_name.as_bytes());
    h.update(protocol.as_bytes());
    h.update(endpoint.as_bytes());
    format!("KUBE-SEP-{}", base32_prefix(&h.finalize(), 16))
}

/// The host-side veth Calico's CNI plugin creates for a pod.
pub fn calico_veth(namespace: &str, pod: &str) -> String {
    let mut h = Sha1::new();
    h.update(namespace.as_bytes());
    h.update(b".");
    h.update(pod.as_bytes());
    let digest = h.finalize();
    let mut out = String::with_capacity(15);
    out.push_str("cali");
    for b in digest.iter().take(6) {
        out.push(pick(HEX, u32::from(b >> 4)));
        out.push(pick(HEX, u32::from(b & 15)));
    }
    out.truncate(15);
    out
}

/// Calico-style rule ids for the rules of one chain, in order.
///
/// Each rule is given as the text felix would append after `-A <chain>`
/// (without the `cali:` comment); see the module contract.
pub fn calico_rule_ids<S: AsRef<str>>(chain: &str, rules: &[S]) -> Vec<String> {
    let mut prev: Vec<u8> = Sha224::digest(chain.as_bytes()).to_vec();
    let mut ids = Vec::with_capacity(rules.len());
    for rule in rules {
        let mut h = Sha224::new();
        h.update(&prev);
        h.update(b"-A ");
        h.update(chain.as_bytes());
        h.update(b" HASH ");
        h.update(rule.as_ref().as_bytes());
        prev = h.finalize().to_vec();
        ids.push(base64url_prefix(&prev, 16));
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_kube_proxy_chains() {
        // Present on every kubeadm cluster: kube-dns and the apiserver.
        assert_eq!(svc_chain("kube-system/kube-dns:dns", "udp"), "KUBE-SVC-TCOU7JCQXEZGVUNU");
        assert_eq!(svc_chain("kube-system/kube-dns:dns-tcp", "tcp"), "KUBE-SVC-ERIFXISQEP7F7OF4");
        assert_eq!(svc_chain("kube-system/kube-dns:metrics", "tcp"), "KUBE-SVC-JD5MR3NA4I4DYORP");
        assert_eq!(svc_chain("default/kubernetes:https", "tcp"), "KUBE-SVC-NPX46M4PTMTKRN6Y");
        // From the kube-proxy v1.28.7 reference dump.
        assert_eq!(svc_chain("ns-13/svc-00033", "tcp"), "KUBE-SVC-2KJ3EBDRWHWRJOWW");
        assert_eq!(sep_chain("ns-01/svc-00000:https", "tcp", "10.244.0.1:8443"), "KUBE-SEP-WHWEI5P5RWZSJZ6J");
    }

    #[test]
    fn calico_veth_names() {
        // The seed's case A pod, named by Calico's CNI plugin.
        assert_eq!(calico_veth("default", "nginx-6799fc88d8-wfztd"), "cali583c2cee4e2");
    }

    #[test]
    fn calico_ids_are_16_url_safe_chars_and_positional() {
        let a = calico_rule_ids("cali-x", &["-j ACCEPT", "-j ACCEPT"]);
        assert_eq!(a.len(), 2);
        assert!(a.iter().all(|id| id.len() == 16));
        assert!(a.iter().all(|id| id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')));
        assert_ne!(a[0], a[1]);
        assert_ne!(calico_rule_ids("cali-y", &["-j ACCEPT"])[0], a[0]);
    }

    #[test]
    fn base_encodings() {
        assert_eq!(base32_prefix(b"foobar", 8), "MZXW6YTB");
        assert_eq!(base64url_prefix(b"\xfb\xff", 3), "-_8");
    }
}
