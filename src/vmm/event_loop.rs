//! The device event loop: one thread running event-manager over every device's
//! ioeventfds and backend fds, until the VM stops.

use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberOps};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

pub type Subscriber = Box<dyn MutEventSubscriber + Send>;

struct Stopper {
    evt: Arc<EventFd>,
    stop: Arc<AtomicBool>,
}

impl MutEventSubscriber for Stopper {
    fn init(&mut self, ops: &mut EventOps) {
        let _ = ops.add(Events::new(&*self.evt, EventSet::IN));
    }
    fn process(&mut self, e: Events, _ops: &mut EventOps) {
        if e.fd() == self.evt.as_raw_fd() {
            let _ = self.evt.read();
            self.stop.store(true, Ordering::SeqCst);
        }
    }
}

#[derive(Debug)]
pub struct EventLoop {
    stop_evt: Arc<EventFd>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl EventLoop {
    /// Start the device thread; it confines itself with `filter` first.
    pub fn start(
        subscribers: Vec<Subscriber>,
        filter: Option<Arc<Vec<u8>>>,
    ) -> std::io::Result<EventLoop> {
        let stop_evt = Arc::new(EventFd::new(libc::EFD_NONBLOCK)?);
        let stop = Arc::new(AtomicBool::new(false));
        let mut em: EventManager<Subscriber> =
            EventManager::new().map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        em.add_subscriber(Box::new(Stopper {
            evt: stop_evt.clone(),
            stop: stop.clone(),
        }));
        for s in subscribers {
            em.add_subscriber(s);
        }
        let handle = std::thread::Builder::new()
            .name("devices".into())
            .spawn(move || {
                if let Some(f) = &filter {
                    super::filters::install(f);
                }
                while !stop.load(Ordering::SeqCst) {
                    if em.run_with_timeout(1000).is_err() {
                        break;
                    }
                }
            })?;
        Ok(EventLoop {
            stop_evt,
            handle: Mutex::new(Some(handle)),
        })
    }

    pub fn stop(&self) {
        let _ = self.stop_evt.write(1);
        if let Some(h) = self.handle.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
    }
}
