//! One thread reaps every child of the monitor and hands each exit status to whoever
//! waits for that pid, whether the wait started before or after the exit.
//!
//! It blocks in waitpid(-1) while the monitor may have children, and sleeps only once
//! waitpid says there are none (ECHILD) and nothing was forked since. It never counts
//! exits: a child somebody else started (a helper program) is reaped too, and must not
//! make it believe a container's process is gone.

use std::collections::HashMap;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};

enum Slot {
    Waiting(Sender<i32>),
    Done(i32),
}

#[derive(Default)]
struct Inner {
    slots: HashMap<i32, Slot>,
    /// There may be children to wait for.
    active: bool,
    /// Bumped by every `forked()`.
    generation: u64,
}

/// Shared reaper state.
#[derive(Clone, Default)]
pub struct Reaper {
    inner: Arc<(Mutex<Inner>, Condvar)>,
}

impl std::fmt::Debug for Reaper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reaper").finish_non_exhaustive()
    }
}

impl Reaper {
    /// Start the reaping thread.
    pub fn start() -> Reaper {
        let r = Reaper::default();
        let r2 = r.clone();
        std::thread::Builder::new()
            .name("reaper".into())
            .spawn(move || r2.run())
            .expect("spawn reaper thread");
        r
    }

    /// Tell the reaper a child was forked (so it blocks in waitpid again).
    pub fn forked(&self) {
        let (m, cv) = &*self.inner;
        let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
        g.active = true;
        g.generation += 1;
        cv.notify_all();
    }

    /// A receiver for `pid`'s raw wait status.
    pub fn subscribe(&self, pid: i32) -> Receiver<i32> {
        let (tx, rx) = channel();
        let (m, _) = &*self.inner;
        let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
        match g.slots.remove(&pid) {
            Some(Slot::Done(st)) => {
                let _ = tx.send(st);
            }
            _ => {
                g.slots.insert(pid, Slot::Waiting(tx));
            }
        }
        rx
    }

    fn deliver(&self, pid: i32, status: i32) {
        let (m, _) = &*self.inner;
        let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
        match g.slots.remove(&pid) {
            Some(Slot::Waiting(tx)) => {
                let _ = tx.send(status);
            }
            _ => {
                g.slots.insert(pid, Slot::Done(status));
            }
        }
    }

    fn run(&self) {
        loop {
            let generation = {
                let (m, cv) = &*self.inner;
                let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
                while !g.active {
                    g = cv.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                g.generation
            };
            let mut status = 0;
            // SAFETY: waitpid with a valid pointer to a local int.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::__WALL) };
            if pid > 0 {
                self.deliver(pid, status);
            } else {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::ECHILD) {
                    let (m, _) = &*self.inner;
                    let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
                    if g.generation == generation {
                        g.active = false;
                    }
                }
            }
        }
    }
}
