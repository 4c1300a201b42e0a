//! Installing a compiled seccomp-BPF program on the calling thread: the container's
//! init (both models) and the VMM's threads use it; what the program says is built
//! elsewhere (`security::seccomp` from Docker's profiles, `vmm::filters` for the VMM).

use std::io;

/// Install a seccomp-BPF program on the calling thread.
pub fn install(prog: &[u8]) -> io::Result<()> {
    const INSN: usize = std::mem::size_of::<libc::sock_filter>();
    if prog.is_empty() || !prog.len().is_multiple_of(INSN) || prog.len() / INSN > u16::MAX as usize
    {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // Copy into properly aligned instructions.
    let insns: Vec<libc::sock_filter> = prog
        .chunks_exact(INSN)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let fprog = libc::sock_fprog {
        len: insns.len() as u16,
        filter: insns.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: fprog points at `insns`, which outlives the call; the kernel copies it.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &fprog as *const libc::sock_fprog,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
