//! The VMM process's own side (argv[0] `twinbox-vmm`): read the VM's description,
//! build the VM with every descriptor it needs, enter the jail, start the confined
//! threads, then serve the monitor's commands until the VM ends.

use super::filters::{self, Thread};
use super::jail;
use super::process::{
    self, FromVmm, Setup, ToVmm, CONSOLE_FD, CONTROL_FD, KVM_FD, SHARE_FD_BASE, TAP_FD, VSOCK_NAME,
};
use super::{ThreadFilters, Vm, VmConfig, VmNet, VmShare, VmVsock, VmmError};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub fn main() -> ! {
    // SAFETY: prctl(PR_SET_NAME) with a NUL-terminated name that outlives the call.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"twinbox-vmm".as_ptr(), 0, 0, 0) };
    // SAFETY: descriptor 3 is the control socket the monitor gave this process, and
    // nothing else owns it.
    let ctl = unsafe { UnixStream::from_raw_fd(CONTROL_FD) };
    let w = match ctl.try_clone() {
        Ok(w) => Arc::new(Mutex::new(w)),
        Err(_) => std::process::exit(1),
    };
    if let Err(e) = run(ctl, &w) {
        let error = crate::util::error_chain(&e);
        eprintln!("twinbox-vmm: {error}");
        let mut g = w.lock().unwrap_or_else(|e| e.into_inner());
        let _ = process::send(&mut *g, &FromVmm::Failed { error });
        std::process::exit(1);
    }
    std::process::exit(0);
}

fn run(ctl: UnixStream, w: &Arc<Mutex<UnixStream>>) -> Result<(), VmmError> {
    let mut reader = BufReader::new(ctl);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let setup = match serde_json::from_str::<ToVmm>(&line) {
        Ok(ToVmm::Setup(s)) => *s,
        _ => {
            return Err(VmmError::Config(
                "no VM description from the monitor".into(),
            ))
        }
    };
    let control = filters::compile(Thread::Control)
        .map_err(|e| VmmError::Jail(crate::util::error_chain(&e)))?;
    let vm = Arc::new(build(setup)?);
    {
        let started = FromVmm::Started {
            steps: vm
                .boot
                .steps
                .iter()
                .map(|(n, d)| (*n, d.as_nanos() as u64))
                .collect(),
            setup_ns: vm.boot.setup().as_nanos() as u64,
            ranges: vm.memory_ranges(),
        };
        process::send(&mut *w.lock().unwrap_or_else(|e| e.into_inner()), &started)?;
        let (vm2, w2, prog) = (vm.clone(), w.clone(), control.clone());
        std::thread::Builder::new()
            .name("report".into())
            .spawn(move || report(vm2, w2, &prog))?;
        filters::install(&control);
    }
    // Commands until the monitor lets go; then the VM goes too.
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        match serde_json::from_str::<ToVmm>(&line) {
            Ok(ToVmm::PowerOff) => vm.power_off(),
            Ok(ToVmm::Resume) => vm.resume(),
            Ok(ToVmm::Pause) => {
                let error = vm.pause().err().map(|e| e.to_string());
                let mut g = w.lock().unwrap_or_else(|e| e.into_inner());
                let _ = process::send(&mut *g, &FromVmm::Paused { error });
            }
            _ => break,
        }
    }
    vm.power_off();
    Ok(())
}

/// Build the VM from `s`, entering the jail between building and running it.
fn build(s: Setup) -> Result<Vm, VmmError> {
    if let Some(cpus) = &s.cpus {
        crate::util::cpuset::pin_current_thread(&cpus.iter().copied().collect())
            .map_err(|e| VmmError::Config(format!("--cpuset-cpus: {e}")))?;
    }
    let compile = |t| {
        filters::compile(t)
            .map(Arc::new)
            .map_err(|e| VmmError::Jail(crate::util::error_chain(&e)))
    };
    let thread_filters = ThreadFilters {
        vcpu: Some(compile(Thread::Vcpu)?),
        devices: Some(compile(Thread::Devices {
            shares: u8::try_from(s.shares.len())
                .map_err(|_| VmmError::Config("too many shares".into()))?,
        })?),
    };
    // SAFETY: descriptor 4 is the console the monitor gave this process; only this
    // File owns it.
    let console = unsafe { File::from_raw_fd(CONSOLE_FD) };
    let net = s.net_mac.map(|mac| VmNet {
        // SAFETY: descriptor 5 is the TAP the monitor opened and passed; only this
        // File owns it.
        tap: unsafe { File::from_raw_fd(TAP_FD) },
        mac,
    });
    let shares = s
        .shares
        .iter()
        .enumerate()
        .map(|(k, tag)| VmShare {
            tag: tag.clone(),
            // SAFETY: descriptor SHARE_FD_BASE + k is the connection to this share's
            // back end the monitor passed; only this stream owns it.
            stream: unsafe { UnixStream::from_raw_fd(SHARE_FD_BASE + k as i32) },
        })
        .collect();
    let jail = s.jail.clone();
    let parent = s.parent;
    Vm::start(VmConfig {
        kernel: s.kernel,
        initrd: s.initrd,
        cmdline: s.cmdline,
        mem_bytes: s.mem_bytes,
        vcpus: s.vcpus,
        disks: s.disks,
        shares,
        net,
        vsock: s.vsock_cid.map(|cid| VmVsock {
            cid,
            uds_base: jail.dir.join(VSOCK_NAME),
            connect_base: Some(PathBuf::from("/").join(VSOCK_NAME)),
        }),
        console: Box::new(console),
        quiet: s.quiet,
        trace: None,
        // SAFETY: descriptor 6 is the /dev/kvm the monitor opened and passed; only this
        // File owns it.
        kvm: Some(unsafe { File::from_raw_fd(KVM_FD) }),
        before_run: Some(Box::new(move || {
            jail::enter(&jail, parent)?;
            Ok(thread_filters)
        })),
    })
}

/// Tell the monitor when the agent came up and how the VM ended; then the process ends.
fn report(vm: Arc<Vm>, w: Arc<Mutex<UnixStream>>, prog: &[u8]) {
    filters::install(prog);
    let mut agent_sent = false;
    loop {
        let end = vm.wait(Some(Duration::from_millis(20)));
        if !agent_sent {
            let at = *vm.boot.agent.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(at) = at {
                let after_ns = at.saturating_duration_since(vm.boot.first_run).as_nanos() as u64;
                let mut g = w.lock().unwrap_or_else(|e| e.into_inner());
                agent_sent = process::send(&mut *g, &FromVmm::Agent { after_ns }).is_ok();
            }
        }
        if let Some(end) = end {
            let resident = resident_pages(&vm.memory_ranges());
            // SAFETY: getrusage fills the zeroed struct it is given.
            let max_rss = unsafe {
                let mut ru: libc::rusage = std::mem::zeroed();
                libc::getrusage(libc::RUSAGE_SELF, &mut ru);
                ru.ru_maxrss as u64 * 1024
            };
            let mut g = w.lock().unwrap_or_else(|e| e.into_inner());
            let _ = process::send(
                &mut *g,
                &FromVmm::Ended {
                    end,
                    max_rss,
                    resident,
                },
            );
            std::process::exit(0);
        }
    }
}

/// Bytes of `ranges` resident in memory, by mincore(2) (the jail has no /proc).
fn resident_pages(ranges: &[(u64, u64)]) -> u64 {
    const PAGE: u64 = 4096;
    let mut total = 0;
    let mut vec = vec![0u8; 1 << 16];
    for &(start, end) in ranges {
        let mut at = start;
        while at < end {
            let pages = ((end - at) / PAGE).min(vec.len() as u64);
            if pages == 0 {
                break;
            }
            // SAFETY: mincore on guest RAM, mapped for the process's life; `vec` has
            // room for `pages` entries.
            let rc = unsafe {
                libc::mincore(
                    at as *mut libc::c_void,
                    (pages * PAGE) as usize,
                    vec.as_mut_ptr(),
                )
            };
            if rc == 0 {
                total += vec[..pages as usize]
                    .iter()
                    .filter(|b| **b & 1 == 1)
                    .count() as u64
                    * PAGE;
            }
            at += pages * PAGE;
        }
    }
    total
}
