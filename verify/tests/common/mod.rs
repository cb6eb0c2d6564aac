//! Helpers shared by the integration tests of natpath-verify.

#![allow(dead_code, clippy::unwrap_used, reason = "each test binary uses some; a test fails by panicking")]

use std::path::{Path, PathBuf};

/// The repository's corpus/ directory.
pub fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus")
}

/// Copy the directory `src` (a snapshot) to `dst`, recursively.
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), to).unwrap();
        }
    }
}
