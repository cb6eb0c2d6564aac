//! Any bytes: the iptables parser never panics, and whatever parses prints
//! back to text that parses to the same ruleset.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(e) = natpath_model::parse::iptables::fuzzing::round_trip(data) {
        panic!("{e}");
    }
});
