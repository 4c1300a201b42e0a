//! One thread per vCPU: run, handle exits, stop for pause, end on shutdown.
//!
//! Another thread interrupts KVM_RUN with a real-time signal whose handler sets the
//! vCPU's `immediate_exit` flag, so a kick is never lost even if it lands just before
//! the ioctl.

use super::bus::Bus;
use super::exit::{handle_exit, Action};
use kvm_ioctls::VcpuFd;
use std::cell::Cell;
use std::sync::atomic::{fence, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, Once};
use std::thread::JoinHandle;
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

thread_local!(static KVM_RUN: Cell<*mut kvm_bindings::kvm_run> = const { Cell::new(std::ptr::null_mut()) });

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    KVM_RUN.with(|p| {
        let r = p.get();
        if !r.is_null() {
            // SAFETY: r points into this thread's mmapped kvm_run, valid while this vCPU
            // thread runs (it is cleared before the VcpuFd is dropped).
            unsafe { (*r).immediate_exit = 1 };
        }
    });
    fence(Ordering::Release);
}

static KICK_INIT: Once = Once::new();

/// The signal used to kick vCPU threads out of KVM_RUN.
pub fn kick_signal() -> libc::c_int {
    KICK_INIT.call_once(|| {
        let _ = register_signal_handler(SIGRTMIN(), kick_handler);
    });
    SIGRTMIN()
}

/// Run state shared between the VMM and its vCPU threads.
#[derive(Debug, Default)]
pub struct RunState {
    pub paused: bool,
    pub stop: bool,
    /// vCPU threads currently parked because of `paused`.
    pub parked: usize,
}

#[derive(Debug)]
pub struct Control {
    pub state: Mutex<RunState>,
    pub cv: Condvar,
}

impl Control {
    pub fn new() -> Arc<Control> {
        Arc::new(Control {
            state: Mutex::new(RunState::default()),
            cv: Condvar::new(),
        })
    }
}

/// A vCPU thread's final word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcpuEnd {
    pub id: u8,
    pub action: Action,
    /// KVM's internal error suberror, when `action` is InternalError.
    pub suberror: Option<u32>,
}

/// Park while paused; true if the thread should stop.
fn park_if_paused(ctl: &Control) -> bool {
    let mut g = ctl.state.lock().unwrap_or_else(|e| e.into_inner());
    if g.paused && !g.stop {
        g.parked += 1;
        ctl.cv.notify_all();
        while g.paused && !g.stop {
            g = ctl.cv.wait(g).unwrap_or_else(|e| e.into_inner());
        }
        g.parked -= 1;
        ctl.cv.notify_all();
    }
    g.stop
}

/// Start a vCPU thread.
pub fn spawn(
    id: u8,
    mut vcpu: VcpuFd,
    pio: Arc<Bus>,
    mmio: Arc<Bus>,
    ctl: Arc<Control>,
    ended: Sender<VcpuEnd>,
    filter: Option<Arc<Vec<u8>>>,
) -> std::io::Result<JoinHandle<()>> {
    kick_signal();
    std::thread::Builder::new()
        .name(format!("vcpu{id}"))
        .spawn(move || {
            if let Some(f) = &filter {
                super::filters::install(f);
            }
            KVM_RUN.with(|p| p.set(vcpu.get_kvm_run() as *mut _));
            let (action, suberror) = loop {
                if park_if_paused(&ctl) {
                    break (Action::Shutdown, None);
                }
                match vcpu.run() {
                    Ok(exit) => match handle_exit(&pio, &mmio, exit) {
                        Action::Continue => {}
                        Action::InternalError => {
                            // SAFETY: reading the union member KVM filled for an
                            // internal-error exit; the exit borrow has ended.
                            let sub =
                                unsafe { vcpu.get_kvm_run().__bindgen_anon_1.internal.suberror };
                            break (Action::InternalError, Some(sub));
                        }
                        other => break (other, None),
                    },
                    Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                        vcpu.set_kvm_immediate_exit(0);
                    }
                    Err(e) => break (Action::Unexpected(format!("KVM_RUN: {e}")), None),
                }
            };
            KVM_RUN.with(|p| p.set(std::ptr::null_mut()));
            let _ = ended.send(VcpuEnd {
                id,
                action,
                suberror,
            });
        })
}

/// Interrupt a vCPU thread's KVM_RUN.
pub fn kick(h: &JoinHandle<()>) {
    let _ = h.kill(kick_signal());
}
