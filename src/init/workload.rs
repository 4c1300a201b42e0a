//! The last steps before `execve`, shared by a container's first process and by `exec`:
//! stdio, session and controlling tty, working dir, keyring, user, capabilities,
//! seccomp, no_new_privs.
//! Runs in a freshly forked child; failures are reported on a pipe, never printed.

use super::caps;
use super::confine::{self, Confinement};
use super::stdio::ChildStdio;
use super::SetupError;
use crate::spec::ProcessSpec;
use std::ffi::CString;
use std::io::Write;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Find `cmd` the way execvp does, in `path_var`, relative to the current root.
pub fn lookup(cmd: &str, path_var: &str) -> Result<PathBuf, i32> {
    if cmd.contains('/') {
        let p = PathBuf::from(cmd);
        return match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() => Err(libc::EACCES),
            Ok(_) => Ok(p),
            Err(e) => Err(e.raw_os_error().unwrap_or(libc::ENOENT)),
        };
    }
    let mut denied = false;
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let p = Path::new(dir).join(cmd);
        if let Ok(m) = std::fs::metadata(&p) {
            if m.is_file() {
                if m.permissions().mode() & 0o111 != 0 {
                    return Ok(p);
                }
                denied = true;
            }
        }
    }
    Err(if denied { libc::EACCES } else { libc::ENOENT })
}

/// Send a failure to the parent: `step\terrno\n`.
pub fn report(fd: RawFd, e: &SetupError) {
    let msg = format!("{}\t{}\n", e.step, e.errno);
    // SAFETY: fd is the report pipe's write end, owned by this child; the buffer is valid.
    unsafe { libc::write(fd, msg.as_ptr() as *const libc::c_void, msg.len()) };
}

/// Parse what `report` wrote.
pub fn parse_report(s: &str) -> Option<SetupError> {
    let line = s.lines().next()?;
    let (step, errno) = line.rsplit_once('\t')?;
    Some(SetupError {
        step: step.to_string(),
        errno: errno.trim().parse().ok()?,
    })
}

fn os_step(step: &str) -> impl FnOnce(std::io::Error) -> SetupError + '_ {
    move |e| SetupError::new(step, e)
}

fn nix_step(step: &str) -> impl FnOnce(nix::Error) -> SetupError + '_ {
    move |e| SetupError {
        step: step.to_string(),
        errno: e as i32,
    }
}

fn cstr(s: &str) -> Result<CString, SetupError> {
    CString::new(s).map_err(|_| SetupError {
        step: "argument contains a NUL byte".into(),
        errno: libc::EINVAL,
    })
}

/// Set up stdio, identity and capabilities, then exec `p`. Returns only on failure.
///
/// `already_confined`: the keyring, bounding set, no_new_privs and seccomp filter were
/// applied by our parent (the exec shim, before it forked us into the container).
pub fn exec_workload(
    p: &ProcessSpec,
    stdio: ChildStdio,
    conf: &Confinement,
    cap_last: u32,
    die_with_parent: bool,
    already_confined: bool,
) -> SetupError {
    match prepare_and_exec(p, stdio, conf, cap_last, die_with_parent, already_confined) {
        Err(e) => e,
        Ok(never) => match never {},
    }
}

enum Never {}

fn prepare_and_exec(
    p: &ProcessSpec,
    stdio: ChildStdio,
    conf: &Confinement,
    cap_last: u32,
    die_with_parent: bool,
    already_confined: bool,
) -> Result<Never, SetupError> {
    nix::unistd::setsid().map_err(nix_step("setsid"))?;
    super::stdio::install(stdio, p.user.uid)?;

    let cwd = if p.cwd.is_empty() {
        "/"
    } else {
        p.cwd.as_str()
    };
    if std::fs::metadata(cwd).is_err() {
        std::fs::create_dir_all(cwd).map_err(os_step("create the working directory"))?;
    }
    nix::unistd::chdir(cwd).map_err(nix_step("chdir to the working directory"))?;

    let arg0 = p.args.first().ok_or(SetupError {
        step: "no command given".into(),
        errno: libc::ENOENT,
    })?;
    let exe = lookup(arg0, p.path_var()).map_err(|errno| SetupError {
        step: format!("exec {arg0}"),
        errno,
    })?;

    let keep = conf.caps;
    if !already_confined {
        confine_early(conf, cap_last)?;
    }
    let groups: Vec<nix::unistd::Gid> = p
        .user
        .additional_gids
        .iter()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    nix::unistd::setgroups(&groups).map_err(nix_step("setgroups"))?;
    nix::unistd::setgid(nix::unistd::Gid::from_raw(p.user.gid)).map_err(nix_step("setgid"))?;
    nix::unistd::setuid(nix::unistd::Uid::from_raw(p.user.uid)).map_err(nix_step("setuid"))?;
    let mask = if p.user.uid == 0 { keep } else { 0 };
    caps::set_all(mask).map_err(os_step("set capabilities"))?;
    if !already_confined {
        confine_late(conf)?;
    }
    if die_with_parent {
        // Set last: a credential change clears the parent-death signal.
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    }

    let path = CString::new(exe.as_os_str().as_bytes()).map_err(|_| SetupError {
        step: "executable path".into(),
        errno: libc::EINVAL,
    })?;
    let argv: Vec<CString> = p.args.iter().map(|a| cstr(a)).collect::<Result<_, _>>()?;
    let mut env: Vec<String> = p.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={}", crate::spec::DEFAULT_PATH));
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(if p.user.uid == 0 {
            "HOME=/root".into()
        } else {
            "HOME=/".into()
        });
    }
    if p.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let envp: Vec<CString> = env.iter().map(|a| cstr(a)).collect::<Result<_, _>>()?;
    let _ = std::io::stdout().flush();
    crate::util::fs::cloexec_all_above_stdio();
    let e = nix::unistd::execve(&path, &argv, &envp).unwrap_err();
    Err(SetupError {
        step: format!("exec {arg0}"),
        errno: e as i32,
    })
}

/// A keyring of its own, then the bounding set (needs CAP_SETPCAP), then seccomp when
/// no_new_privs is off: loading a filter then needs CAP_SYS_ADMIN, held until the
/// identity changes.
pub fn confine_early(conf: &Confinement, cap_last: u32) -> Result<(), SetupError> {
    confine::new_session_keyring().map_err(os_step("join a new session keyring"))?;
    caps::drop_bounding(conf.caps, cap_last).map_err(os_step("drop capabilities"))?;
    if let (Some(prog), false) = (&conf.seccomp, conf.no_new_privs) {
        confine::install_seccomp(prog).map_err(os_step("load the seccomp filter"))?;
    }
    Ok(())
}

/// With no_new_privs: set it, then the filter, as late as possible (so it has the
/// fewest calls of ours to allow).
pub fn confine_late(conf: &Confinement) -> Result<(), SetupError> {
    if conf.no_new_privs {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(os_step("set no_new_privs")(std::io::Error::last_os_error()));
        }
        if let Some(prog) = &conf.seccomp {
            confine::install_seccomp(prog).map_err(os_step("load the seccomp filter"))?;
        }
    }
    Ok(())
}

/// Bring up `lo` in the current network namespace.
pub fn loopback_up() -> Result<(), SetupError> {
    // SAFETY: socket(2) with constant arguments; the fd is closed below.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(os_step("socket for lo")(std::io::Error::last_os_error()));
    }
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo\0".iter().enumerate() {
        ifr.ifr_name[i] = *b as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS fills ifr, which lives across the call.
    let mut rc = unsafe { libc::ioctl(s, libc::SIOCGIFFLAGS, &mut ifr) };
    if rc == 0 {
        // SAFETY: the union's flags member was just written by the kernel.
        unsafe { ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
        // SAFETY: SIOCSIFFLAGS reads ifr, which lives across the call.
        rc = unsafe { libc::ioctl(s, libc::SIOCSIFFLAGS, &ifr) };
    }
    let err = std::io::Error::last_os_error();
    // SAFETY: closing the socket opened above.
    unsafe { libc::close(s) };
    if rc != 0 {
        return Err(os_step("bring up lo")(err));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_searches_path_and_reports_errno() {
        let d = tempfile::tempdir().unwrap();
        let exe = d.path().join("tool");
        std::fs::write(&exe, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let plain = d.path().join("data");
        std::fs::write(&plain, b"x").unwrap();
        let path = format!("/nonexistent:{}", d.path().display());
        assert_eq!(lookup("tool", &path).unwrap(), exe);
        assert_eq!(lookup("missing", &path), Err(libc::ENOENT));
        assert_eq!(lookup("data", &path), Err(libc::EACCES));
        assert_eq!(lookup("/nonexistent/x", &path), Err(libc::ENOENT));
    }

    #[test]
    fn report_roundtrip() {
        let e = parse_report("mount /proc\t13\n").unwrap();
        assert_eq!(e.step, "mount /proc");
        assert_eq!(e.errno, 13);
        assert!(parse_report("").is_none());
    }
}
