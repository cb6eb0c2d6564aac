//! Attaching to a TUN device by name: the one `unsafe` call of the crate.
//!
//! Contract: `attach` opens `/dev/net/tun` and issues `TUNSETIFF` with an
//! `ifreq` that lives on this function's stack for the whole call; nothing
//! else is unsafe. Kernel facts relied on (drivers/net/tun.c): `TUNSETIFF`
//! on an existing persistent device of the same mode attaches to it
//! (`ip tuntap add dev tunl0 mode tun` made it, in the caller's namespace);
//! with `IFF_NO_PI` each read returns one whole IP packet and each write
//! injects one, received as if it had arrived on that device.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;

/// `struct ifreq` is 40 bytes on 64-bit Linux: a 16-byte name, then a union
/// whose first member we use is `short ifr_flags`.
const IFREQ_LEN: usize = 40;
const IFNAMSIZ: usize = 16;

/// Attach to the TUN device `name` (IFF_TUN | IFF_NO_PI).
#[expect(
    unsafe_code,
    reason = "TUNSETIFF has no safe wrapper; the ifreq buffer outlives the ioctl and is sized for the kernel's struct"
)]
pub fn attach(name: &str) -> io::Result<File> {
    if name.is_empty() || name.len() >= IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad interface name `{name}`")));
    }
    let file = OpenOptions::new().read(true).write(true).open("/dev/net/tun")?;
    let mut req = [0u8; IFREQ_LEN];
    if let Some(slot) = req.get_mut(..name.len()) {
        slot.copy_from_slice(name.as_bytes());
    }
    let flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    if let Some(slot) = req.get_mut(IFNAMSIZ..IFNAMSIZ + 2) {
        slot.copy_from_slice(&flags.to_ne_bytes());
    }
    // SAFETY: `req` is a live, writable buffer at least as large as `struct
    // ifreq`; the kernel reads the name and flags and may write the name back.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, req.as_mut_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}
