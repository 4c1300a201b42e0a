//! virtio-net on a TAP device. Built with the networking issue's bridge in mind; here
//! the device and its TAP backend.

use super::{read_config_bytes, Activation, Interrupt, VirtioDevice, TYPE_NET};
use crate::vmm::memory::GuestMemoryMmap;
use event_manager::{EventOps, Events, MutEventSubscriber};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use virtio_queue::{Queue, QueueT};
use vm_memory::ByteValued;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

const QUEUE_SIZE: u16 = 256;
const RX: usize = 0;
const TX: usize = 1;
const F_MAC: u64 = 1 << 5;
/// The virtio-net header with VERSION_1 (12 bytes).
pub const VNET_HDR_LEN: usize = 12;
pub(crate) const MAX_FRAME: usize = 65562;

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
    pub num_buffers: u16,
}
// SAFETY: plain old data, no padding (12 bytes of u8/u16 fields).
unsafe impl ByteValued for VnetHdr {}

/// Frames the guest sent (TX): each chain is vnet header + frame, written as one packet.
pub fn process_tx<W: Write>(
    q: &mut Queue,
    mem: &GuestMemoryMmap,
    tap: &mut W,
) -> Result<bool, virtio_queue::Error> {
    let mut used = false;
    while let Some(chain) = q.pop_descriptor_chain(mem) {
        let head = chain.head_index();
        let mut r = chain.reader(mem)?;
        let len = r.available_bytes().min(MAX_FRAME + VNET_HDR_LEN);
        let mut buf = vec![0u8; len];
        if r.read_exact(&mut buf).is_ok() && len > VNET_HDR_LEN {
            // A full TAP queue drops the frame, as a real NIC would.
            let _ = tap.write(&buf);
        }
        q.add_used(mem, head, 0)?;
        used = true;
    }
    Ok(used)
}

/// Deliver one received packet (vnet header + frame) into an RX buffer.
/// Returns Ok(false) when the guest has no buffer (the packet is kept by the caller).
pub fn deliver_rx(
    q: &mut Queue,
    mem: &GuestMemoryMmap,
    packet: &[u8],
) -> Result<bool, virtio_queue::Error> {
    let Some(chain) = q.pop_descriptor_chain(mem) else {
        return Ok(false);
    };
    let head = chain.head_index();
    let mut w = chain.writer(mem)?;
    let mut pkt = packet.to_vec();
    if pkt.len() >= VNET_HDR_LEN {
        // num_buffers = 1 (last two bytes of the v1 header)
        pkt[10] = 1;
        pkt[11] = 0;
    }
    let n = if pkt.len() <= w.available_bytes() && w.write_all(&pkt).is_ok() {
        pkt.len()
    } else {
        0
    };
    q.add_used(mem, head, u32::try_from(n).unwrap_or(u32::MAX))?;
    Ok(true)
}

#[derive(Debug)]
pub struct Net {
    tap: File,
    mac: [u8; 6],
    /// A packet read from the TAP that found no RX buffer yet.
    pending: Option<Vec<u8>>,
    active: Option<(Arc<GuestMemoryMmap>, Vec<Queue>, Interrupt)>,
}

impl Net {
    pub fn new(tap: File, mac: [u8; 6]) -> Net {
        Net {
            tap,
            mac,
            pending: None,
            active: None,
        }
    }

    pub fn tap_fd(&self) -> i32 {
        self.tap.as_raw_fd()
    }

    fn process_tx(&mut self) {
        if let Some((mem, queues, irq)) = self.active.as_mut() {
            if process_tx(&mut queues[TX], mem, &mut self.tap).unwrap_or(true) {
                irq.signal_used();
            }
        }
    }

    fn process_rx(&mut self) {
        let Some((mem, queues, irq)) = self.active.as_mut() else {
            // Not active: drain the TAP so it does not fill up.
            let mut buf = vec![0u8; MAX_FRAME + VNET_HDR_LEN];
            while self.tap.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
            return;
        };
        let mut notify = false;
        let mut buf = vec![0u8; MAX_FRAME + VNET_HDR_LEN];
        loop {
            let pkt = match self.pending.take() {
                Some(p) => p,
                None => match self.tap.read(&mut buf) {
                    Ok(n) if n > 0 => buf[..n].to_vec(),
                    _ => break,
                },
            };
            match deliver_rx(&mut queues[RX], mem, &pkt) {
                Ok(true) => notify = true,
                Ok(false) => {
                    self.pending = Some(pkt);
                    break;
                }
                Err(_) => break,
            }
        }
        if notify {
            irq.signal_used();
        }
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        TYPE_NET
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE; 2]
    }
    fn features(&self) -> u64 {
        F_MAC
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.mac, offset, data);
    }
    fn activate(&mut self, a: Activation) -> Result<(), String> {
        if a.queues.len() != 2 {
            return Err("net needs 2 queues".into());
        }
        self.active = Some((a.mem, a.queues, a.interrupt));
        Ok(())
    }
    fn reset(&mut self) {
        self.active = None;
        self.pending = None;
    }
    fn is_active(&self) -> bool {
        self.active.is_some()
    }
}

#[derive(Debug)]
pub struct NetHandler {
    pub dev: Arc<Mutex<Net>>,
    pub queue_evts: Vec<Arc<EventFd>>,
    pub tap_fd: i32,
}

impl MutEventSubscriber for NetHandler {
    fn init(&mut self, ops: &mut EventOps) {
        for e in &self.queue_evts {
            let _ = ops.add(Events::new(&**e, EventSet::IN));
        }
        let _ = ops.add(Events::new_raw(self.tap_fd, EventSet::IN));
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        let fd = events.fd();
        let mut d = self.dev.lock().unwrap_or_else(|e| e.into_inner());
        if fd == self.queue_evts[TX].as_raw_fd() {
            let _ = self.queue_evts[TX].read();
            d.process_tx();
        } else if fd == self.queue_evts[RX].as_raw_fd() {
            let _ = self.queue_evts[RX].read();
            d.process_rx();
        } else if fd == self.tap_fd {
            d.process_rx();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_queue::desc::{split::Descriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    #[test]
    fn tx_writes_header_and_frame_as_one_packet() {
        let mem = crate::vmm::memory::create(1 << 20).unwrap();
        mem.write_slice(&[0u8; 12], GuestAddress(0x1000)).unwrap();
        mem.write_slice(b"frame-bytes", GuestAddress(0x2000))
            .unwrap();
        let vq = MockSplitQueue::new(&mem, 16);
        vq.add_desc_chains(
            &[
                RawDescriptor::from(Descriptor::new(0x1000, 12, 1, 1)),
                RawDescriptor::from(Descriptor::new(0x2000, 11, 0, 0)),
            ],
            0,
        )
        .unwrap();
        let mut q: Queue = vq.create_queue().unwrap();
        let mut out = Vec::new();
        assert!(process_tx(&mut q, &mem, &mut out).unwrap());
        assert_eq!(out.len(), 23);
        assert_eq!(&out[12..], b"frame-bytes");
        assert_eq!(vq.used().idx().load(), 1);
    }

    #[test]
    fn rx_fills_a_buffer_or_reports_none() {
        let mem = crate::vmm::memory::create(1 << 20).unwrap();
        let vq = MockSplitQueue::new(&mem, 16);
        vq.add_desc_chains(
            &[RawDescriptor::from(Descriptor::new(0x3000, 1600, 2, 0))],
            0,
        )
        .unwrap();
        let mut q: Queue = vq.create_queue().unwrap();
        let mut pkt = vec![0u8; 12];
        pkt.extend_from_slice(b"hello");
        assert!(deliver_rx(&mut q, &mem, &pkt).unwrap());
        let e = vq.used().ring().ref_at(0).unwrap().load();
        assert_eq!(e.len(), 17);
        let h: VnetHdr = mem.read_obj(GuestAddress(0x3000)).unwrap();
        assert_eq!(h.num_buffers, 1);
        assert!(!deliver_rx(&mut q, &mem, &pkt).unwrap(), "no buffer left");
    }
}
