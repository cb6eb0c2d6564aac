//! A fast hasher for the maps natpath builds by the thousand: chain names,
//! Service names, addresses. The mixing is FxHash's (rustc's own), eight
//! bytes at a time. It does not resist keys chosen to collide, which only
//! the author of the dumps being read could choose, and then only to make
//! natpath slower; std's SipHash spent a few percent of a 10,000-Service
//! gate on hashing chain names.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// FxHash's multiplier.
const K: u64 = 0x517c_c1b7_2722_0a95;

/// The hasher: see the module's documentation.
#[derive(Default, Clone, Copy)]
pub struct NameHasher(u64);

impl NameHasher {
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
    }
}

impl Hasher for NameHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
}

/// What builds [`NameHasher`]s.
pub type FastBuild = BuildHasherDefault<NameHasher>;

/// A `HashMap` with [`NameHasher`].
pub type FastMap<K, V> = HashMap<K, V, FastBuild>;

/// A `HashSet` with [`NameHasher`].
pub type FastSet<T> = HashSet<T, FastBuild>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn names_that_differ_in_any_byte_hash_apart() {
        let b = FastBuild::default();
        let base = "KUBE-SEP-227JIK6TXWQHGDV2";
        let h = b.hash_one(base);
        for i in 0..base.len() {
            let mut v = base.as_bytes().to_vec();
            if let Some(c) = v.get_mut(i) {
                *c ^= 1;
            }
            let other = String::from_utf8(v).unwrap_or_default();
            assert_ne!(b.hash_one(other.as_str()), h, "byte {i}");
        }
    }

    #[test]
    fn a_map_finds_what_it_holds() {
        let mut m: FastMap<String, usize> = FastMap::default();
        for i in 0..10_000 {
            m.insert(format!("KUBE-SVC-{i:016}"), i);
        }
        assert_eq!(m.len(), 10_000);
        assert!((0..10_000).all(|i| m.get(&format!("KUBE-SVC-{i:016}")) == Some(&i)));
        assert_eq!(m.get("KUBE-SVC-nope"), None);
    }
}
