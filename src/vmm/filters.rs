//! The jailed VMM's seccomp filters, one per kind of thread, each allowing only what
//! that thread's loop does once the VM runs (set-up happens before any filter):
//!
//! - a vCPU thread: `KVM_RUN`, writes to the console and to eventfds (interrupts),
//!   futexes (pause/park), the signal that kicks it out of `KVM_RUN`;
//! - the device thread: epoll, reads and writes of disks (positional), the TAP and
//!   eventfds, and for vsock: accepting on its listener and connecting out (unix
//!   sockets only) to the monitor's;
//! - the control threads (the command loop and the reporter): the control socket,
//!   kicking vCPUs, sleeping.
//!
//! Threads share memory and descriptors, so what a compromised thread can do is the
//! union of the filters, not its own; the filters keep that union small. Everything
//! else traps: the handler prints the syscall number to the console log and
//! the process exits, which the monitor reports as the VM's end. Filters are written in
//! Docker's profile format and compiled with libseccomp, as containers' are.

use crate::security::seccomp::{self, Arg, Profile, Rule};

/// Which thread a filter is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Thread {
    Vcpu,
    /// The device thread, with this many virtio-fs connections.
    Devices {
        shares: u8,
    },
    Control,
}

/// What every Rust thread needs to run at all: memory, locks, time, its own exit,
/// returning from the kick signal, panicking.
const RUNTIME: &[&str] = &[
    "brk",
    "munmap",
    "mremap",
    "madvise",
    "futex",
    "sched_yield",
    "clock_gettime",
    "clock_nanosleep",
    "nanosleep",
    "getrandom",
    "rt_sigreturn",
    "rt_sigprocmask",
    "sigaltstack",
    "getpid",
    "gettid",
    "tgkill",
    "close",
    "exit",
    "exit_group",
    "write",
    "writev",
];

const KVM_RUN: u64 = 0xae80;
const FIONBIO: u64 = 0x5421;

fn allow(names: &[&str]) -> Rule {
    Rule {
        names: names.iter().map(|s| s.to_string()).collect(),
        action: "SCMP_ACT_ALLOW".into(),
        ..Default::default()
    }
}

fn arg(index: u32, op: &str, value: u64, value_two: u64) -> Arg {
    Arg {
        index,
        value,
        value_two,
        op: op.into(),
    }
}

/// Memory may be mapped and protected, never executable: nothing needs new code once
/// the VM runs, and an exploit would.
fn no_exec() -> Vec<Rule> {
    let prot = |name: &str| Rule {
        args: vec![arg(2, "SCMP_CMP_MASKED_EQ", libc::PROT_EXEC as u64, 0)],
        ..allow(&[name])
    };
    vec![prot("mmap"), prot("mprotect")]
}

fn ioctl(request: u64) -> Rule {
    Rule {
        args: vec![Arg {
            index: 1,
            value: request,
            value_two: 0,
            op: "SCMP_CMP_EQ".into(),
        }],
        ..allow(&["ioctl"])
    }
}

/// The profile for `t`.
pub fn profile(t: Thread) -> Profile {
    let mut rules = vec![allow(RUNTIME)];
    rules.extend(no_exec());
    match t {
        Thread::Vcpu => {
            rules.push(ioctl(KVM_RUN));
            rules.push(allow(&["read"]));
        }
        Thread::Devices { shares } => {
            // virtio-fs: vhost-user messages (sendmsg/recvmsg, which carry the rings'
            // eventfds) on descriptors 7, 8, … only, the connections to virtiofsd (a
            // compromised thread could close one and put another socket there: the
            // monitor's vsock listeners, which never take descriptors in).
            for k in 0..i32::from(shares) {
                rules.push(Rule {
                    args: vec![arg(
                        0,
                        "SCMP_CMP_EQ",
                        (super::process::SHARE_FD_BASE + k) as u64,
                        0,
                    )],
                    ..allow(&["sendmsg", "recvmsg"])
                });
            }
            rules.push(allow(&[
                "epoll_wait",
                "epoll_pwait",
                "epoll_ctl",
                "read",
                "readv",
                "pread64",
                "preadv",
                "pwrite64",
                "pwritev",
                "fsync",
                "fdatasync",
                "lseek",
                "accept4",
                "connect",
                "recvfrom",
                // std writes to sockets with send(MSG_NOSIGNAL): sendto(2) without an
                // address on a connected stream.
                "sendto",
                "shutdown",
                "getsockopt",
            ]));
            rules.push(ioctl(FIONBIO));
            // New sockets: unix streams only (the vsock muxer's connections out; the
            // VMM's own network namespace has no abstract sockets of the host's).
            rules.push(Rule {
                args: vec![
                    arg(0, "SCMP_CMP_EQ", libc::AF_UNIX as u64, 0),
                    arg(
                        1,
                        "SCMP_CMP_EQ",
                        (libc::SOCK_STREAM | libc::SOCK_CLOEXEC) as u64,
                        0,
                    ),
                ],
                ..allow(&["socket"])
            });
            // The muxer's read timeout on a host-initiated connection's first line.
            rules.push(Rule {
                args: vec![
                    arg(1, "SCMP_CMP_EQ", libc::SOL_SOCKET as u64, 0),
                    arg(2, "SCMP_CMP_EQ", libc::SO_RCVTIMEO as u64, 0),
                ],
                ..allow(&["setsockopt"])
            });
            // Duplicating (try_clone) and flags, nothing else of fcntl.
            for cmd in [
                libc::F_DUPFD_CLOEXEC,
                libc::F_GETFD,
                libc::F_SETFD,
                libc::F_GETFL,
                libc::F_SETFL,
            ] {
                rules.push(Rule {
                    args: vec![arg(1, "SCMP_CMP_EQ", cmd as u64, 0)],
                    ..allow(&["fcntl"])
                });
            }
        }
        Thread::Control => {
            rules.push(allow(&[
                "read",
                "recvfrom",
                "sendto",
                "poll",
                "ppoll",
                "shutdown",
                "getrusage",
                "mincore",
            ]));
        }
    }
    Profile {
        default_action: "SCMP_ACT_TRAP".into(),
        arch_map: Vec::new(),
        syscalls: rules,
        ..Default::default()
    }
}

/// `t`'s filter as a seccomp-BPF program (libseccomp; compiled before the jail, which
/// has no room for libseccomp's temporary file).
pub fn compile(t: Thread) -> Result<Vec<u8>, seccomp::SeccompError> {
    seccomp::compile(&profile(t), 0)
}

/// Install `prog` on the calling thread, after a SIGSYS handler that says which
/// syscall a filter refused. A thread that cannot be confined does not run: the
/// process ends.
pub fn install(prog: &[u8]) {
    install_sigsys_handler();
    if let Err(e) = crate::util::seccomp::install(prog) {
        eprintln!("twinbox-vmm: seccomp: {e}");
        // SAFETY: ending the process; nothing to unwind.
        unsafe { libc::_exit(125) };
    }
}

/// Exit status of a VMM stopped by one of its filters.
pub const SECCOMP_EXIT: i32 = 159;

extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // siginfo's SIGSYS member: _call_addr (8 bytes) then _syscall (int), after the
    // three ints and padding of the header (16 bytes).
    // SAFETY: the kernel passes a valid siginfo for SIGSYS; offset 24 is _syscall.
    let nr = unsafe { *(info as *const u8).add(24).cast::<i32>() };
    let mut buf = *b"twinbox-vmm: a seccomp filter refused syscall           \n";
    let mut n = nr.unsigned_abs();
    let mut i = buf.len() - 2;
    loop {
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
        i -= 1;
    }
    // SAFETY: write(2) and _exit(2) are async-signal-safe; buf outlives the call.
    unsafe {
        libc::write(2, buf.as_ptr().cast(), buf.len());
        libc::_exit(SECCOMP_EXIT);
    }
}

fn install_sigsys_handler() {
    // SAFETY: a zeroed sigaction with a handler that only calls async-signal-safe
    // functions; SA_SIGINFO for the syscall number.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigsys as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_thread_filter_compiles() {
        for t in [
            Thread::Vcpu,
            Thread::Devices { shares: 0 },
            Thread::Devices { shares: 3 },
            Thread::Control,
        ] {
            let prog = compile(t).unwrap();
            assert!(!prog.is_empty() && prog.len().is_multiple_of(8), "{t:?}");
        }
    }

    #[test]
    fn vcpus_may_not_open_files_or_make_sockets() {
        let p = profile(Thread::Vcpu);
        let names: Vec<&str> = p
            .syscalls
            .iter()
            .flat_map(|r| r.names.iter().map(|s| s.as_str()))
            .collect();
        for forbidden in [
            "open", "openat", "socket", "execve", "clone", "clone3", "ptrace",
        ] {
            assert!(!names.contains(&forbidden), "{forbidden}");
        }
        assert_eq!(p.default_action, "SCMP_ACT_TRAP");
        // Nobody may map code; descriptors travel only to and from virtiofsd.
        for t in [Thread::Vcpu, Thread::Devices { shares: 2 }, Thread::Control] {
            for r in &profile(t).syscalls {
                for n in &r.names {
                    if ["sendmsg", "recvmsg"].contains(&n.as_str()) {
                        assert!(matches!(t, Thread::Devices { .. }), "{t:?} {n}");
                        assert_eq!(r.args.len(), 1, "{n} is conditional");
                        assert_eq!(r.args[0].index, 0);
                        assert!([7, 8].contains(&r.args[0].value), "{n} on {:?}", r.args[0]);
                    }
                    if n == "mmap" || n == "mprotect" {
                        assert_eq!(r.args.len(), 1, "{t:?} {n} is conditional");
                        assert_eq!(r.args[0].value, libc::PROT_EXEC as u64);
                    }
                }
            }
        }
    }
}
