//! What confines a workload beyond its namespaces, resolved for one container:
//! capabilities, no_new_privs and a compiled seccomp filter. Both models apply it in
//! [`workload`](super::workload) just before execve — the process backend in its
//! child, a microVM's agent in the guest (it receives this with the spec, the filter
//! already compiled on the host, so the agent needs no seccomp library).

use serde::{Deserialize, Serialize};
use std::io;

/// Confinement of every process of one container (its workload and its execs).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Confinement {
    /// Capabilities of a root workload (effective, permitted, inheritable) and the
    /// bounding set of every workload, root or not.
    pub caps: u64,
    /// PR_SET_NO_NEW_PRIVS: setuid binaries and file capabilities gain nothing.
    pub no_new_privs: bool,
    /// A seccomp-BPF program (an array of `struct sock_filter`), or None (unconfined).
    #[serde(default, with = "crate::util::b64_opt")]
    pub seccomp: Option<Vec<u8>>,
}

impl Default for Confinement {
    /// Docker's default capabilities, nothing else.
    fn default() -> Confinement {
        Confinement {
            caps: super::caps::default_mask(),
            no_new_privs: false,
            seccomp: None,
        }
    }
}

pub use crate::util::seccomp::install as install_seccomp;

/// Give the calling process a new, anonymous session keyring, so the container does
/// not share the host's (runc does the same). Kernels without keys are fine; any other
/// failure (a key quota used up) is an error, not a shared keyring.
pub fn new_session_keyring() -> io::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: keyctl with a NULL name: join a new anonymous session keyring.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<libc::c_char>(),
        )
    };
    if rc >= 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => Ok(()),
        _ => Err(e),
    }
}

/// Make the calling process non-dumpable: its /proc files become root's and need
/// CAP_SYS_PTRACE to open (its exe, its fds, its memory), and it cannot be ptraced
/// by the container. execve resets it for the workload.
pub fn not_dumpable() {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
}
