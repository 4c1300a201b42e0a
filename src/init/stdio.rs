//! A process's stdio: pipes, or a terminal created inside the container.
//!
//! A terminal must come from the container's own devpts (so `tty` and `ttyname` work
//! inside), so the child opens /dev/ptmx after entering the container and passes the
//! master back over a socket (SCM_RIGHTS), like runc's console socket.

use super::SetupError;
use crate::sandbox::{SandboxError, WorkloadIo};
use crate::spec::ProcessSpec;
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use std::fs::File;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The child's side.
#[derive(Debug)]
pub enum ChildStdio {
    Pipes {
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// Create a terminal in the container and send its master on `sock`.
    Pty { sock: OwnedFd },
}

/// The monitor's side.
#[derive(Debug)]
pub enum HostStdio {
    Ready(WorkloadIo),
    /// The terminal master arrives on `sock` once the child made it.
    Pty {
        sock: OwnedFd,
    },
}

fn pipe() -> Result<(File, File), SandboxError> {
    let (r, w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| SandboxError::Io(e.into()))?;
    Ok((File::from(r), File::from(w)))
}

pub fn make_stdio(p: &ProcessSpec) -> Result<(HostStdio, ChildStdio), SandboxError> {
    if p.tty {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| SandboxError::Io(e.into()))?;
        return Ok((HostStdio::Pty { sock: a }, ChildStdio::Pty { sock: b }));
    }
    let (stdin_r, stdin_w) = if p.stdin {
        let (r, w) = pipe()?;
        (OwnedFd::from(r), Some(w))
    } else {
        (OwnedFd::from(File::open("/dev/null")?), None)
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    Ok((
        HostStdio::Ready(WorkloadIo {
            stdin: stdin_w,
            stdout: out_r,
            stderr: Some(err_r),
        }),
        ChildStdio::Pipes {
            stdin: stdin_r,
            stdout: OwnedFd::from(out_w),
            stderr: OwnedFd::from(err_w),
        },
    ))
}

impl HostStdio {
    /// The host's stdio, waiting for the terminal master if there is one. Returns the
    /// master too (for resizing).
    pub fn finish(self) -> Result<(WorkloadIo, Option<OwnedFd>), SandboxError> {
        match self {
            HostStdio::Ready(io) => Ok((io, None)),
            HostStdio::Pty { sock } => {
                let master = recv_fd(sock.as_raw_fd())?.ok_or_else(|| {
                    SandboxError::Other("the container did not create its terminal".into())
                })?;
                let m = File::from(master);
                let io = WorkloadIo {
                    stdin: Some(m.try_clone()?),
                    stdout: m.try_clone()?,
                    stderr: None,
                };
                Ok((io, Some(OwnedFd::from(m))))
            }
        }
    }
}

fn recv_fd(sock: RawFd) -> Result<Option<OwnedFd>, SandboxError> {
    let mut buf = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(|e| SandboxError::Io(e.into()))?;
    for c in msg.cmsgs().map_err(|e| SandboxError::Io(e.into()))? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel just installed this fd for us; we own it now.
                return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
    }
    Ok(None)
}

fn step(s: &str) -> impl FnOnce(nix::Error) -> SetupError + '_ {
    move |e| SetupError {
        step: s.to_string(),
        errno: e as i32,
    }
}

/// In the child (after setsid, inside the container): put stdio on 0, 1, 2.
pub fn install(stdio: ChildStdio, uid: u32) -> Result<(), SetupError> {
    match stdio {
        ChildStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            for (fd, target) in [(&stdin, 0), (&stdout, 1), (&stderr, 2)] {
                nix::unistd::dup2(fd.as_raw_fd(), target).map_err(step("dup2 stdio"))?;
            }
        }
        ChildStdio::Pty { sock } => {
            use nix::fcntl::OFlag;
            let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY)
                .map_err(step("open /dev/ptmx"))?;
            nix::pty::grantpt(&master).map_err(step("grantpt"))?;
            nix::pty::unlockpt(&master).map_err(step("unlockpt"))?;
            let name = nix::pty::ptsname_r(&master).map_err(step("ptsname"))?;
            let slave = nix::fcntl::open(
                name.as_str(),
                OFlag::O_RDWR | OFlag::O_NOCTTY,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(step("open the terminal"))?;
            let _ = nix::unistd::fchown(slave, Some(nix::unistd::Uid::from_raw(uid)), None);
            let fds = [master.as_raw_fd()];
            sendmsg::<()>(
                sock.as_raw_fd(),
                &[IoSlice::new(b"t")],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::empty(),
                None,
            )
            .map_err(step("send the terminal to the monitor"))?;
            drop(master);
            for target in 0..3 {
                nix::unistd::dup2(slave, target).map_err(step("dup2 terminal"))?;
            }
            if slave > 2 {
                let _ = nix::unistd::close(slave);
            }
            // SAFETY: TIOCSCTTY on fd 0 (the terminal just installed), integer argument.
            if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
                return Err(SetupError::new(
                    "set the controlling terminal",
                    std::io::Error::last_os_error(),
                ));
            }
        }
    }
    Ok(())
}
