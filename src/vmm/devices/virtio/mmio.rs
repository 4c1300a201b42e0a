//! The virtio-mmio (version 2) transport: the register file a driver programs.

use super::{Activation, Interrupt, VirtioDevice, F_VERSION_1, INT_CONFIG, INT_VRING};
use crate::vmm::bus::{BusDevice, WriteOutcome};
use crate::vmm::memory::GuestMemoryMmap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::EventFd;

const MAGIC: u32 = 0x7472_6976;
const VERSION: u32 = 2;
const VENDOR: u32 = 0x5442_4f58; // "TBOX"

#[cfg(test)]
const STATUS_ACKNOWLEDGE: u32 = 1;
const STATUS_DRIVER: u32 = 2;
const STATUS_DRIVER_OK: u32 = 4;
const STATUS_FEATURES_OK: u32 = 8;
const STATUS_FAILED: u32 = 0x80;

pub struct MmioTransport {
    device: Arc<Mutex<dyn VirtioDevice>>,
    mem: Arc<GuestMemoryMmap>,
    interrupt: Interrupt,
    /// One eventfd per queue, signalled on QueueNotify (by KVM's ioeventfd, or by us).
    queue_evts: Vec<Arc<EventFd>>,
    queues: Vec<Queue>,
    device_features_sel: u32,
    driver_features_sel: u32,
    acked_features: u64,
    queue_sel: u32,
    status: u32,
    config_generation: u32,
    /// The driver wrote a queue size the queue refused (not a power of two, above the
    /// maximum, beyond 16 bits): DRIVER_OK then fails rather than run with a size the
    /// driver does not expect.
    bad_queue_size: bool,
}

impl std::fmt::Debug for MmioTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmioTransport").finish_non_exhaustive()
    }
}

impl MmioTransport {
    pub fn new(
        device: Arc<Mutex<dyn VirtioDevice>>,
        mem: Arc<GuestMemoryMmap>,
        interrupt: Interrupt,
        queue_evts: Vec<Arc<EventFd>>,
    ) -> MmioTransport {
        let sizes = device
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .queue_max_sizes();
        let queues = sizes
            .iter()
            .map(|s| Queue::new(*s).expect("queue sizes are powers of two"))
            .collect();
        MmioTransport {
            device,
            mem,
            interrupt,
            queue_evts,
            queues,
            device_features_sel: 0,
            driver_features_sel: 0,
            acked_features: 0,
            queue_sel: 0,
            status: 0,
            config_generation: 0,
            bad_queue_size: false,
        }
    }

    fn dev(&self) -> std::sync::MutexGuard<'_, dyn VirtioDevice + 'static> {
        self.device.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn features(&self) -> u64 {
        self.dev().features() | F_VERSION_1
    }

    fn queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn reset(&mut self) {
        self.dev().reset();
        for q in &mut self.queues {
            q.reset();
        }
        self.status = 0;
        self.acked_features = 0;
        self.queue_sel = 0;
        self.bad_queue_size = false;
        self.interrupt.status.store(0, Ordering::SeqCst);
    }

    fn set_status(&mut self, v: u32) {
        if v == 0 {
            self.reset();
            return;
        }
        let newly_ok = v & STATUS_DRIVER_OK != 0 && self.status & STATUS_DRIVER_OK == 0;
        self.status = v;
        if newly_ok {
            let valid = !self.bad_queue_size
                && self
                    .queues
                    .iter()
                    .all(|q| !q.ready() || q.is_valid(&*self.mem));
            let result = if !valid || self.acked_features & F_VERSION_1 == 0 {
                Err("invalid queue set-up or legacy driver".to_string())
            } else {
                // The device gets its own copies; ours keep answering register reads.
                let queues: Result<Vec<Queue>, _> = self
                    .queues
                    .iter()
                    .map(|q| Queue::try_from(q.state()))
                    .collect();
                let Ok(queues) = queues else {
                    self.status |= STATUS_FAILED;
                    return;
                };
                let a = Activation {
                    mem: self.mem.clone(),
                    queues,
                    interrupt: self.interrupt.clone(),
                    acked_features: self.acked_features,
                };
                self.dev().activate(a)
            };
            if result.is_err() {
                self.status |= STATUS_FAILED;
            }
        }
    }

    /// Register value at `offset` (32-bit registers below 0x100).
    fn read_reg(&mut self, offset: u64) -> u32 {
        match offset {
            0x000 => MAGIC,
            0x004 => VERSION,
            0x008 => self.dev().device_type(),
            0x00c => VENDOR,
            0x010 => {
                let f = self.features();
                match self.device_features_sel {
                    0 => (f & 0xffff_ffff) as u32,
                    1 => (f >> 32) as u32,
                    _ => 0,
                }
            }
            0x034 => self.queue().map(|q| u32::from(q.max_size())).unwrap_or(0),
            0x044 => self.queue().map(|q| u32::from(q.ready())).unwrap_or(0),
            0x060 => self.interrupt.status.load(Ordering::SeqCst),
            0x070 => self.status,
            0x0fc => self.config_generation,
            _ => 0,
        }
    }

    fn write_reg(&mut self, offset: u64, v: u32) {
        // Queue and feature registers may only change before DRIVER_OK.
        let setting_up = self.status & STATUS_DRIVER_OK == 0;
        match offset {
            0x014 => self.device_features_sel = v,
            0x020 if setting_up && self.status & STATUS_DRIVER != 0 => {
                let shift = match self.driver_features_sel {
                    0 => 0,
                    1 => 32,
                    _ => return,
                };
                let mask = 0xffff_ffffu64 << shift;
                let offered = self.features();
                self.acked_features =
                    (self.acked_features & !mask) | ((u64::from(v) << shift) & offered);
            }
            0x024 => self.driver_features_sel = v,
            0x030 => self.queue_sel = v,
            0x038 if setting_up => {
                if let Some(q) = self.queue() {
                    // Never truncated, never silently ignored (virtio-queue's set_size
                    // keeps the old size on a bad one).
                    let refused = u16::try_from(v).map_or(true, |n| q.try_set_size(n).is_err());
                    self.bad_queue_size |= refused;
                }
            }
            0x044 if setting_up => {
                if let Some(q) = self.queue() {
                    q.set_ready(v == 1);
                }
            }
            0x050 => {
                if let Some(e) = self.queue_evts.get(v as usize) {
                    let _ = e.write(1);
                }
            }
            0x064 => {
                self.interrupt
                    .status
                    .fetch_and(!(v & (INT_VRING | INT_CONFIG)), Ordering::SeqCst);
            }
            0x070 => self.set_status(v),
            0x080 | 0x084 | 0x090 | 0x094 | 0x0a0 | 0x0a4 if setting_up => {
                let (lo, hi) = if offset & 4 == 0 {
                    (Some(v), None)
                } else {
                    (None, Some(v))
                };
                if let Some(q) = self.queue() {
                    match offset & !4 {
                        0x080 => q.set_desc_table_address(lo, hi),
                        0x090 => q.set_avail_ring_address(lo, hi),
                        _ => q.set_used_ring_address(lo, hi),
                    }
                }
            }
            _ => {}
        }
    }

    /// True once the driver accepted the features (for tests).
    pub fn features_ok(&self) -> bool {
        self.status & STATUS_FEATURES_OK != 0
    }

    pub fn driver_ok(&self) -> bool {
        self.status & STATUS_DRIVER_OK != 0 && self.status & STATUS_FAILED == 0
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= 0x100 {
            self.dev().read_config(offset - 0x100, data);
            return;
        }
        if data.len() != 4 {
            data.fill(0);
            return;
        }
        let v = self.read_reg(offset);
        data.copy_from_slice(&v.to_le_bytes());
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> WriteOutcome {
        if offset >= 0x100 {
            self.dev().write_config(offset - 0x100, data);
        } else if data.len() == 4 {
            let v = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
            self.write_reg(offset, v);
        }
        WriteOutcome::Done
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    pub struct Dummy {
        pub active: Arc<AtomicBool>,
    }
    impl VirtioDevice for Dummy {
        fn device_type(&self) -> u32 {
            2
        }
        fn queue_max_sizes(&self) -> Vec<u16> {
            vec![16]
        }
        fn features(&self) -> u64 {
            1 << 5
        }
        fn read_config(&self, offset: u64, data: &mut [u8]) {
            super::super::read_config_bytes(&[1, 2, 3, 4], offset, data)
        }
        fn activate(&mut self, a: Activation) -> Result<(), String> {
            assert_eq!(a.queues.len(), 1);
            self.active.store(true, Ordering::SeqCst);
            Ok(())
        }
        fn reset(&mut self) {
            self.active.store(false, Ordering::SeqCst);
        }
        fn is_active(&self) -> bool {
            self.active.load(Ordering::SeqCst)
        }
    }

    fn rd(t: &mut MmioTransport, off: u64) -> u32 {
        let mut d = [0u8; 4];
        t.read(off, &mut d);
        u32::from_le_bytes(d)
    }
    fn wr(t: &mut MmioTransport, off: u64, v: u32) {
        t.write(off, &v.to_le_bytes());
    }

    #[test]
    fn a_queue_size_beyond_16_bits_is_no_size_not_a_truncated_one() {
        let mem = Arc::new(crate::vmm::memory::create(1 << 20).unwrap());
        let active = Arc::new(AtomicBool::new(false));
        let dev = Arc::new(Mutex::new(Dummy {
            active: active.clone(),
        }));
        let evt = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        let mut t = MmioTransport::new(
            dev,
            mem,
            Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).unwrap()),
            vec![evt],
        );
        wr(&mut t, 0x70, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        wr(&mut t, 0x24, 1);
        wr(&mut t, 0x20, 1);
        wr(&mut t, 0x70, 0xb);
        wr(&mut t, 0x30, 0);
        // 0x1_0010 truncated to u16 would be 16, a valid size.
        wr(&mut t, 0x38, 0x1_0010);
        wr(&mut t, 0x80, 0x1000);
        wr(&mut t, 0x90, 0x2000);
        wr(&mut t, 0xa0, 0x3000);
        wr(&mut t, 0x44, 1);
        wr(&mut t, 0x70, 0xf);
        assert!(
            !active.load(Ordering::SeqCst),
            "activated with a bogus queue size"
        );
        assert_ne!(rd(&mut t, 0x70) & STATUS_FAILED, 0);
    }

    #[test]
    fn driver_handshake_activates_the_device() {
        let mem = Arc::new(crate::vmm::memory::create(1 << 20).unwrap());
        let active = Arc::new(AtomicBool::new(false));
        let dev = Arc::new(Mutex::new(Dummy {
            active: active.clone(),
        }));
        let evt = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        let mut t = MmioTransport::new(
            dev,
            mem,
            Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).unwrap()),
            vec![evt.clone()],
        );
        assert_eq!(rd(&mut t, 0), MAGIC);
        assert_eq!(rd(&mut t, 4), 2);
        assert_eq!(rd(&mut t, 8), 2);
        wr(&mut t, 0x70, STATUS_ACKNOWLEDGE);
        wr(&mut t, 0x70, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        wr(&mut t, 0x14, 1);
        assert_eq!(rd(&mut t, 0x10), 1, "VERSION_1 in the high bank");
        wr(&mut t, 0x14, 0);
        assert_eq!(rd(&mut t, 0x10), 1 << 5);
        wr(&mut t, 0x24, 0);
        wr(&mut t, 0x20, (1 << 5) | (1 << 9)); // bit 9 not offered: dropped
        wr(&mut t, 0x24, 1);
        wr(&mut t, 0x20, 1);
        wr(&mut t, 0x70, 0xb);
        assert!(t.features_ok());
        assert_eq!(t.acked_features, F_VERSION_1 | (1 << 5));
        wr(&mut t, 0x30, 0);
        assert_eq!(rd(&mut t, 0x34), 16);
        wr(&mut t, 0x38, 16);
        wr(&mut t, 0x80, 0x1000);
        wr(&mut t, 0x90, 0x2000);
        wr(&mut t, 0xa0, 0x3000);
        wr(&mut t, 0x44, 1);
        assert_eq!(rd(&mut t, 0x44), 1);
        wr(&mut t, 0x70, 0xf);
        assert!(t.driver_ok());
        assert!(active.load(Ordering::SeqCst));
        // notify reaches the queue's eventfd
        wr(&mut t, 0x50, 0);
        assert_eq!(evt.read().unwrap(), 1);
        // config space, byte-wise
        let mut b = [0u8; 2];
        t.read(0x101, &mut b);
        assert_eq!(b, [2, 3]);
        // interrupt status and ack
        t.interrupt.signal_used();
        assert_eq!(rd(&mut t, 0x60), 1);
        wr(&mut t, 0x64, 1);
        assert_eq!(rd(&mut t, 0x60), 0);
        // reset
        wr(&mut t, 0x70, 0);
        assert!(!active.load(Ordering::SeqCst));
        assert_eq!(rd(&mut t, 0x70), 0);
    }

    #[test]
    fn legacy_driver_is_refused() {
        let mem = Arc::new(crate::vmm::memory::create(1 << 20).unwrap());
        let active = Arc::new(AtomicBool::new(false));
        let dev = Arc::new(Mutex::new(Dummy {
            active: active.clone(),
        }));
        let mut t = MmioTransport::new(
            dev,
            mem,
            Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).unwrap()),
            vec![],
        );
        wr(&mut t, 0x70, 3);
        wr(&mut t, 0x20, 1 << 5);
        wr(&mut t, 0x70, 0xf);
        assert!(!active.load(Ordering::SeqCst));
        assert!(rd(&mut t, 0x70) & STATUS_FAILED != 0);
    }
}
