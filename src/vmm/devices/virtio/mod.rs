//! Virtio over MMIO: the transport, and the block, network and vsock devices.
//!
//! Each device is split in three: the device (feature bits, config space, activation,
//! behind the MMIO transport), its event handler (queue ioeventfds and backend fds, on
//! the event loop), and pure queue logic that unit tests drive with mock queues.

pub mod block;
pub mod fs;
#[doc(hidden)]
pub mod fuzz;
pub mod mmio;
pub mod net;
pub mod vsock;

use crate::vmm::memory::GuestMemoryMmap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use virtio_queue::Queue;
use vmm_sys_util::eventfd::EventFd;

pub const TYPE_NET: u32 = 1;
pub const TYPE_BLOCK: u32 = 2;
pub const TYPE_VSOCK: u32 = 19;

/// VIRTIO_F_VERSION_1: a modern (v2 MMIO) device; Linux requires it.
pub const F_VERSION_1: u64 = 1 << 32;

pub const INT_VRING: u32 = 1;
pub const INT_CONFIG: u32 = 2;

/// A device's interrupt line: the MMIO InterruptStatus bits and the irqfd behind them.
#[derive(Clone, Debug)]
pub struct Interrupt {
    pub status: Arc<AtomicU32>,
    pub irqfd: Arc<EventFd>,
}

impl Interrupt {
    pub fn new(irqfd: EventFd) -> Interrupt {
        Interrupt {
            status: Arc::new(AtomicU32::new(0)),
            irqfd: Arc::new(irqfd),
        }
    }

    /// Tell the guest a used ring moved.
    pub fn signal_used(&self) {
        self.status.fetch_or(INT_VRING, Ordering::SeqCst);
        let _ = self.irqfd.write(1);
    }
}

/// What a device receives when the driver sets DRIVER_OK.
#[derive(Debug)]
pub struct Activation {
    pub mem: Arc<GuestMemoryMmap>,
    pub queues: Vec<Queue>,
    pub interrupt: Interrupt,
    pub acked_features: u64,
}

/// The device side of a virtio device, as the MMIO transport drives it.
pub trait VirtioDevice: Send {
    fn device_type(&self) -> u32;
    /// Maximum size of each queue (the number of queues is the length).
    fn queue_max_sizes(&self) -> Vec<u16>;
    /// Feature bits offered (VERSION_1 is added by the transport).
    fn features(&self) -> u64;
    fn read_config(&self, offset: u64, data: &mut [u8]);
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// Start using the queues.
    fn activate(&mut self, a: Activation) -> Result<(), String>;
    /// The driver reset the device: drop the queues.
    fn reset(&mut self);
    fn is_active(&self) -> bool;
}

/// Copy `data.len()` bytes of `config` starting at `offset` (zero past the end).
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    for (i, b) in data.iter_mut().enumerate() {
        let at = usize::try_from(offset).ok().and_then(|o| o.checked_add(i));
        *b = at.and_then(|a| config.get(a)).copied().unwrap_or(0);
    }
}
