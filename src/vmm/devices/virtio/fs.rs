//! virtio-fs through vhost-user: the guest's FUSE requests are served by `virtiofsd`
//! (the virtio-fs project's back end), which maps guest RAM (a memfd) and reads and
//! writes the virtqueues itself. This VMM is only the front end: it offers the device
//! (config space: the mount tag), and when the driver starts it hands the back end the
//! rings' addresses, the queue kick eventfds (KVM ioeventfds: a guest notify goes
//! straight to virtiofsd) and one "call" eventfd per queue, which the event loop turns
//! into the device's interrupt (virtio-mmio needs the InterruptStatus bit set, so an
//! irqfd alone would not do).
//!
//! Everything before the guest runs (owner, features, the memory table with the memfd)
//! happens in `Fs::connect`, before the VMM enters its jail; the per-queue set-up runs
//! on the device thread, which the vCPU that wrote DRIVER_OK wakes through an eventfd.

use super::{read_config_bytes, Activation, Interrupt, VirtioDevice, F_VERSION_1};
use crate::vmm::memory::GuestMemoryMmap;
use event_manager::{EventOps, Events, MutEventSubscriber};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryBackend};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

pub const TYPE_FS: u32 = 26;
/// The high-priority queue and one request queue.
/// Request queues the config space announces (one hiprio queue comes first).
const REQUEST_QUEUES: u32 = 1;
const QUEUES: usize = 1 + REQUEST_QUEUES as usize;
const QUEUE_SIZE: u16 = 256;
/// The mount tag's size in the config space (virtio spec 5.11.4).
pub const TAG_LEN: usize = 36;
const F_RING_INDIRECT_DESC: u64 = 1 << 28;
const F_RING_EVENT_IDX: u64 = 1 << 29;
/// How long one vhost-user round trip may take: a back end that stops answering
/// fails the device instead of holding the device thread (and every device on it).
const REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("mount tag {0:?}: 1 to 36 bytes")]
    Tag(String),
    #[error("guest memory is not shared (a memfd), so a vhost-user back end cannot map it")]
    MemoryNotShared,
    #[error("vhost-user {0}: {1}")]
    Vhost(&'static str, vhost::Error),
    #[error("the back end serves {0} queues, virtio-fs needs {QUEUES}")]
    Queues(u64),
    #[error("eventfd: {0}")]
    EventFd(#[from] std::io::Error),
}

fn vh<T>(what: &'static str, r: vhost::Result<T>) -> Result<T, FsError> {
    r.map_err(|e| FsError::Vhost(what, e))
}

/// The config space: the tag, NUL-padded, and the number of request queues.
pub fn config_space(tag: &str) -> Result<Vec<u8>, FsError> {
    if tag.is_empty() || tag.len() > TAG_LEN || tag.contains('\0') {
        return Err(FsError::Tag(tag.to_string()));
    }
    let mut c = vec![0u8; TAG_LEN + 4];
    c[..tag.len()].copy_from_slice(tag.as_bytes());
    c[TAG_LEN..].copy_from_slice(&REQUEST_QUEUES.to_le_bytes());
    Ok(c)
}

/// Feature bits the guest is offered: what the back end has, of what this front end
/// passes through (the rings' layout options; VERSION_1 is the transport's).
pub fn offered_features(backend: u64) -> u64 {
    backend & (F_RING_INDIRECT_DESC | F_RING_EVENT_IDX | F_VERSION_1)
}

/// Feature bits sent to the back end once the guest acked `acked`.
pub fn backend_features(acked: u64, backend: u64) -> u64 {
    let protocol = VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
    (acked & offered_features(backend)) | (backend & protocol)
}

pub struct Fs {
    tag: String,
    config: Vec<u8>,
    frontend: Frontend,
    backend_features: u64,
    /// The back end speaks protocol features (then each ring is enabled explicitly).
    protocol: bool,
    calls: Vec<Arc<EventFd>>,
    kicks: Vec<Arc<EventFd>>,
    /// Work for the device thread: set by the transport (a vCPU thread).
    pending: Option<Activation>,
    reset_pending: bool,
    wake: Arc<EventFd>,
    interrupt: Option<Interrupt>,
    /// Rings handed to the back end.
    started: Vec<usize>,
    active: bool,
}

impl std::fmt::Debug for Fs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fs").finish_non_exhaustive()
    }
}

impl Fs {
    /// Take over a connection to a vhost-user-fs back end and give it guest memory.
    pub fn connect(stream: UnixStream, tag: &str, mem: &GuestMemoryMmap) -> Result<Fs, FsError> {
        let config = config_space(tag)?;
        stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
        stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
        let mut frontend = Frontend::from_stream(stream, QUEUES as u64);
        vh("SET_OWNER", frontend.set_owner())?;
        let features = vh("GET_FEATURES", frontend.get_features())?;
        let protocol = features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0;
        if protocol {
            let theirs = vh("GET_PROTOCOL_FEATURES", frontend.get_protocol_features())?;
            let ours = VhostUserProtocolFeatures::MQ | VhostUserProtocolFeatures::REPLY_ACK;
            vh(
                "SET_PROTOCOL_FEATURES",
                frontend.set_protocol_features(theirs & ours),
            )?;
            if theirs.contains(VhostUserProtocolFeatures::MQ) {
                let n = vh("GET_QUEUE_NUM", frontend.get_queue_num())?;
                if n < QUEUES as u64 {
                    return Err(FsError::Queues(n));
                }
            }
        }
        let mut regions = Vec::new();
        for r in mem.iter() {
            regions.push(
                VhostUserMemoryRegionInfo::from_guest_region(r)
                    .map_err(|_| FsError::MemoryNotShared)?,
            );
        }
        vh("SET_MEM_TABLE", frontend.set_mem_table(&regions))?;
        let mut calls = Vec::new();
        for _ in 0..QUEUES {
            calls.push(Arc::new(EventFd::new(libc::EFD_NONBLOCK)?));
        }
        Ok(Fs {
            tag: tag.to_string(),
            config,
            frontend,
            backend_features: features,
            protocol,
            calls,
            kicks: Vec::new(),
            pending: None,
            reset_pending: false,
            wake: Arc::new(EventFd::new(libc::EFD_NONBLOCK)?),
            interrupt: None,
            started: Vec::new(),
            active: false,
        })
    }

    /// The queues' notify eventfds (KVM ioeventfds), once the device is on the bus.
    pub fn set_kicks(&mut self, kicks: Vec<Arc<EventFd>>) {
        self.kicks = kicks;
    }

    /// The device thread's part: stop rings of a reset, hand over rings of a start.
    fn service(&mut self) -> Result<(), FsError> {
        if std::mem::take(&mut self.reset_pending) {
            for i in std::mem::take(&mut self.started) {
                // GET_VRING_BASE stops the ring in the back end.
                vh("GET_VRING_BASE", self.frontend.get_vring_base(i))?;
            }
        }
        let Some(a) = self.pending.take() else {
            return Ok(());
        };
        self.interrupt = Some(a.interrupt.clone());
        vh(
            "SET_FEATURES",
            self.frontend
                .set_features(backend_features(a.acked_features, self.backend_features)),
        )?;
        for (i, q) in a.queues.iter().enumerate() {
            if !q.ready() {
                continue;
            }
            let (Some(kick), Some(call)) = (self.kicks.get(i), self.calls.get(i)) else {
                continue;
            };
            let config = ring_config(q, &a.mem).ok_or(FsError::Vhost(
                "SET_VRING_ADDR",
                vhost::Error::InvalidGuestMemory,
            ))?;
            vh("SET_VRING_NUM", self.frontend.set_vring_num(i, q.size()))?;
            vh("SET_VRING_ADDR", self.frontend.set_vring_addr(i, &config))?;
            vh("SET_VRING_BASE", self.frontend.set_vring_base(i, 0))?;
            vh("SET_VRING_CALL", self.frontend.set_vring_call(i, call))?;
            vh("SET_VRING_KICK", self.frontend.set_vring_kick(i, kick))?;
            if self.protocol {
                vh("SET_VRING_ENABLE", self.frontend.set_vring_enable(i, true))?;
            }
            if !self.started.contains(&i) {
                self.started.push(i);
            }
        }
        Ok(())
    }
}

/// A ring's addresses as the back end wants them: in this process's address space
/// (the memory table maps them to its own). None if the guest put a ring outside RAM.
pub fn ring_config(q: &Queue, mem: &GuestMemoryMmap) -> Option<VringConfigData> {
    let hva = |gpa: u64| {
        mem.get_host_address(GuestAddress(gpa))
            .ok()
            .map(|p| p as u64)
    };
    Some(VringConfigData {
        queue_max_size: q.max_size(),
        queue_size: q.size(),
        flags: 0,
        desc_table_addr: hva(q.desc_table())?,
        used_ring_addr: hva(q.used_ring())?,
        avail_ring_addr: hva(q.avail_ring())?,
        log_addr: None,
    })
}

impl VirtioDevice for Fs {
    fn device_type(&self) -> u32 {
        TYPE_FS
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE; QUEUES]
    }
    fn features(&self) -> u64 {
        offered_features(self.backend_features)
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data)
    }
    fn activate(&mut self, a: Activation) -> Result<(), String> {
        if self.active {
            // DRIVER_OK again without a reset: the rings are the back end's already.
            return Ok(());
        }
        self.pending = Some(a);
        self.active = true;
        self.wake.write(1).map_err(|e| e.to_string())
    }
    fn reset(&mut self) {
        self.pending = None;
        self.reset_pending = true;
        self.active = false;
        let _ = self.wake.write(1);
    }
    fn is_active(&self) -> bool {
        self.active
    }
}

/// Event handler: the wake-up from the transport and the back end's call eventfds.
#[derive(Debug)]
pub struct FsHandler {
    pub dev: Arc<Mutex<Fs>>,
    wake: Arc<EventFd>,
    calls: Vec<Arc<EventFd>>,
}

impl FsHandler {
    pub fn new(dev: Arc<Mutex<Fs>>) -> FsHandler {
        let (wake, calls) = {
            let d = dev.lock().unwrap_or_else(|e| e.into_inner());
            (d.wake.clone(), d.calls.clone())
        };
        FsHandler { dev, wake, calls }
    }
}

impl MutEventSubscriber for FsHandler {
    fn init(&mut self, ops: &mut EventOps) {
        let _ = ops.add(Events::new(&*self.wake, EventSet::IN));
        for c in &self.calls {
            let _ = ops.add(Events::new(&**c, EventSet::IN));
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        let fd = events.fd();
        if fd == self.wake.as_raw_fd() {
            let _ = self.wake.read();
            let mut d = self.dev.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = d.service() {
                eprintln!("twinbox-vmm: virtio-fs {}: {e}", d.tag);
            }
            return;
        }
        if let Some(c) = self.calls.iter().find(|c| c.as_raw_fd() == fd) {
            let _ = c.read();
            let d = self.dev.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = &d.interrupt {
                i.signal_used();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_space_holds_the_tag_and_one_request_queue() {
        let c = config_space("tbfs0").unwrap();
        assert_eq!(c.len(), 40);
        assert_eq!(&c[..5], b"tbfs0");
        assert!(c[5..36].iter().all(|b| *b == 0));
        assert_eq!(u32::from_le_bytes(c[36..40].try_into().unwrap()), 1);
        assert!(config_space("").is_err());
        assert!(config_space(&"x".repeat(37)).is_err());
        assert!(config_space("a\0b").is_err());
        assert!(config_space(&"x".repeat(36)).is_ok());
    }

    #[test]
    fn features_pass_only_ring_options_and_keep_protocol_features_for_the_back_end() {
        let protocol = VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        let backend = F_VERSION_1 | F_RING_EVENT_IDX | protocol | 1; // bit 0: NOTIFICATION
        assert_eq!(offered_features(backend), F_VERSION_1 | F_RING_EVENT_IDX);
        // The guest cannot ack what was not offered; the back end keeps its protocol bit.
        let sent = backend_features(F_VERSION_1 | F_RING_INDIRECT_DESC | 1, backend);
        assert_eq!(sent, F_VERSION_1 | protocol);
    }

    #[test]
    fn rings_outside_guest_memory_are_refused() {
        let mem = crate::vmm::memory::create(1 << 20).unwrap();
        let mut q = Queue::new(16).unwrap();
        q.set_desc_table_address(Some(0x1000), Some(0));
        q.set_avail_ring_address(Some(0x2000), Some(0));
        q.set_used_ring_address(Some(0x3000), Some(0));
        let c = ring_config(&q, &mem).unwrap();
        assert_eq!(
            c.desc_table_addr,
            mem.get_host_address(GuestAddress(0x1000)).unwrap() as u64
        );
        q.set_used_ring_address(Some(0x7fff_0000), Some(1));
        assert!(ring_config(&q, &mem).is_none());
    }
}
