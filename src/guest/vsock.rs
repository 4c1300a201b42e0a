//! The guest's end of a vsock stream to the host (the agent's control connection and
//! its DNS relay).

use std::fs::File;
use std::io;
use std::os::fd::FromRawFd;

/// Connect to `port` of context `cid` (the host is 2).
pub fn connect(cid: u32, port: u32) -> io::Result<File> {
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just created and is owned by this File.
    let file = unsafe { File::from_raw_fd(fd) };
    // SAFETY: sockaddr_vm is plain old data; zeroed is a valid value.
    let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    // AF_VSOCK is 40: fits the family's u16.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_family = family;
    addr.svm_port = port;
    addr.svm_cid = cid;
    // SAFETY: connect reads `addr` for the given length; both outlive the call.
    let rc = unsafe {
        libc::connect(
            fd,
            &addr as *const libc::sockaddr_vm as *const libc::sockaddr,
            // 16 bytes: fits socklen_t.
            libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_vm>())
                .map_err(io::Error::other)?,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}
