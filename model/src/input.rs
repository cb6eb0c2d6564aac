//! Reading input files with bounds: natpath runs as root (`kernel-check`)
//! and on production nodes, so a path that names a named pipe, a device
//! (`/dev/zero`) or a huge file must give an error, never a hang or an
//! allocation without limit.
//!
//! Contract: [`read_file`] opens without blocking (a FIFO with no writer
//! does not wait), accepts only a regular file of at most
//! [`MAX_FILE_BYTES`], and says which of these failed. A missing file is
//! [`InputError::Missing`], so callers can treat optional files as absent.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The largest file natpath reads: kube-proxy's iptables-save of 10,000
/// Services is 28 MB, so this leaves room for about 90,000.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// `O_NONBLOCK` on Linux: opening a FIFO for reading does not wait for a writer.
const O_NONBLOCK: i32 = 0o4000;

/// Why a file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    /// It does not exist.
    Missing(PathBuf),
    /// It is not a regular file (what it is instead).
    NotAFile(PathBuf, &'static str),
    /// It is larger than [`MAX_FILE_BYTES`].
    TooLarge(PathBuf),
    /// The system refused (permissions, I/O).
    Io(PathBuf, String),
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::Missing(p) => write!(f, "{}: cannot read: no such file", p.display()),
            InputError::NotAFile(p, what) => {
                write!(f, "{}: cannot read: expected a regular file, found {what}", p.display())
            }
            InputError::TooLarge(p) => write!(
                f,
                "{}: cannot read: the file is larger than {} MiB, the most natpath reads",
                p.display(),
                MAX_FILE_BYTES / (1024 * 1024)
            ),
            InputError::Io(p, e) => write!(f, "{}: cannot read: {e}", p.display()),
        }
    }
}

impl std::error::Error for InputError {}

impl InputError {
    /// The message without the path (for callers that print a location).
    pub fn reason(&self) -> String {
        let full = self.to_string();
        match full.split_once(": cannot read: ") {
            Some((_, r)) => format!("cannot read the file: {r}"),
            None => full,
        }
    }
}

fn kind_of(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a named pipe"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "something else"
    }
}

/// The bytes of the regular file at `path`, bounded by [`MAX_FILE_BYTES`].
pub fn read_file(path: &Path) -> Result<Vec<u8>, InputError> {
    let io = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::NotFound {
            InputError::Missing(path.to_path_buf())
        } else {
            InputError::Io(path.to_path_buf(), e.to_string().to_lowercase())
        }
    };
    let file = std::fs::OpenOptions::new().read(true).custom_flags(O_NONBLOCK).open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(InputError::NotAFile(path.to_path_buf(), kind_of(meta.file_type())));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(InputError::TooLarge(path.to_path_buf()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // The file may grow while it is read: read one byte past the bound to see.
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(InputError::TooLarge(path.to_path_buf()));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_directories_are_refused() {
        assert_eq!(
            read_file(Path::new("/dev/zero")),
            Err(InputError::NotAFile(PathBuf::from("/dev/zero"), "a character device"))
        );
        assert_eq!(read_file(Path::new("/")), Err(InputError::NotAFile(PathBuf::from("/"), "a directory")));
        assert_eq!(
            read_file(Path::new("/nonexistent/natpath")),
            Err(InputError::Missing(PathBuf::from("/nonexistent/natpath")))
        );
    }

    #[test]
    fn a_named_pipe_does_not_hang() {
        let dir = std::env::temp_dir().join(format!("natpath-input-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let fifo = dir.join("fifo");
        let _ = std::fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().map(|s| s.success()).unwrap_or(false);
        if made {
            assert_eq!(read_file(&fifo), Err(InputError::NotAFile(fifo.clone(), "a named pipe")));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
