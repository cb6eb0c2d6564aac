//! natpath-verify
