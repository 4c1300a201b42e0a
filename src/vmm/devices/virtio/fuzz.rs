//! Fuzz entry points for everything a guest controls on the host side: descriptor
//! chains into virtio-blk, virtio-net and virtio-vsock, the vsock muxer's packet
//! logic. The cargo-fuzz targets (`fuzz/fuzz_targets/`) and the stable-toolchain test
//! (`tests/fuzz_corpus.rs`, seeds + fixed mutants) both call these, so every `cargo
//! test` checks what the fuzzers check. Each returns normally for any input; a panic
//! (an out-of-range index, an overflow, a disk written past its end) is the finding.
//!
//! Input layout for the queue targets: byte 0 picks the queue size (a power of two,
//! 1..=256), the rest is copied into guest memory from address 0, over the descriptor
//! table (0x0), the available ring (0x1000), the used ring (0x2000) and the buffers
//! (0x3000 on). The guest owns all of it, as a hostile guest does.
// A harness over in-memory queues and disks: its addresses are small constants, and
// an offset out of range must panic (that is what the fuzzer looks for).
#![allow(clippy::cast_possible_truncation)]

use super::block::{process_queue, Disk};
use super::net::{deliver_rx, process_tx as net_tx};
use super::vsock::packet::{Header, HDR_LEN};
use super::vsock::{fill_rx, process_tx as vsock_tx, Muxer};
use crate::vmm::memory::GuestMemoryMmap;
use std::cell::RefCell;
use std::io;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};

/// Guest RAM for one case.
pub const MEM: usize = 64 << 10;
pub const DESC: u64 = 0x0;
pub const AVAIL: u64 = 0x1000;
pub const USED: u64 = 0x2000;
/// A second queue (vsock RX) at these offsets.
const DESC2: u64 = 0x4000;
const AVAIL2: u64 = 0x5000;
const USED2: u64 = 0x6000;
/// The disk behind the fuzzed block device.
const DISK: usize = 16 << 10;

fn memory(data: &[u8]) -> Option<GuestMemoryMmap> {
    let mem = crate::vmm::memory::create(MEM as u64).ok()?;
    let body = data.get(1..).unwrap_or(&[]);
    mem.write_slice(&body[..body.len().min(MEM)], GuestAddress(0))
        .ok()?;
    Some(mem)
}

fn queue(data: &[u8], mem: &GuestMemoryMmap, at: (u64, u64, u64)) -> Option<Queue> {
    let size = 1u16 << (data.first().copied().unwrap_or(4) % 9);
    let mut q = Queue::new(256).ok()?;
    q.set_size(size);
    q.set_desc_table_address(Some(at.0 as u32), Some(0));
    q.set_avail_ring_address(Some(at.1 as u32), Some(0));
    q.set_used_ring_address(Some(at.2 as u32), Some(0));
    q.set_ready(true);
    q.is_valid(mem).then_some(q)
}

/// A disk in memory that refuses (panics on) any access outside it.
struct VecDisk(RefCell<Vec<u8>>);

impl Disk for VecDisk {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let d = self.0.borrow();
        let at = offset as usize;
        buf.copy_from_slice(&d[at..at + buf.len()]);
        Ok(())
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let at = offset as usize;
        self.0.borrow_mut()[at..at + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    fn size(&self) -> u64 {
        self.0.borrow().len() as u64
    }
}

/// virtio-blk: whatever the chains say, the device reads and writes only inside its
/// disk, and refuses writes to a read-only one.
pub fn virtio_blk(data: &[u8]) {
    let Some(mem) = memory(data) else { return };
    let Some(mut q) = queue(data, &mem, (DESC, AVAIL, USED)) else {
        return;
    };
    let read_only = data.len() % 2 == 1;
    let disk = VecDisk(RefCell::new(vec![0x5a; DISK]));
    let _ = process_queue(&mut q, &mem, &disk, read_only, b"fuzz-serial");
    if read_only {
        assert!(
            disk.0.borrow().iter().all(|b| *b == 0x5a),
            "a read-only disk was written"
        );
    }
}

/// virtio-net: the guest's TX chains become frames on the TAP, none larger than a
/// vnet header plus the largest frame; a received packet goes into the guest's RX
/// buffer or is refused, whatever the buffers say.
pub fn virtio_net(data: &[u8]) {
    let Some(mem) = memory(data) else { return };
    let Some(mut q) = queue(data, &mem, (DESC, AVAIL, USED)) else {
        return;
    };
    struct Tap(Vec<usize>);
    impl io::Write for Tap {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.push(b.len());
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut tap = Tap(Vec::new());
    let _ = net_tx(&mut q, &mem, &mut tap);
    assert!(
        tap.0.iter().all(|n| *n <= super::net::MAX_FRAME + 12),
        "oversized frame"
    );
    // The same memory as RX buffers, for a packet made of the input's tail.
    if let Some(mut q) = queue(data, &mem, (DESC, AVAIL, USED)) {
        let pkt = &data[data.len().saturating_sub(1600)..];
        let _ = deliver_rx(&mut q, &mem, pkt);
    }
}

/// virtio-vsock: the guest's TX chains into the muxer (connecting to nothing: every
/// request is refused), then the muxer's answers into the RX queue.
pub fn virtio_vsock(data: &[u8]) {
    let Some(mem) = memory(data) else { return };
    let Some(mut tx) = queue(data, &mem, (DESC, AVAIL, USED)) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("tb-fuzz-vsock-{}", std::process::id()));
    let Ok(mut m) = Muxer::new(3, dir.join("none"), false) else {
        return;
    };
    let _ = vsock_tx(&mut tx, &mem, &mut m);
    if let Some(mut rx) = queue(data, &mem, (DESC2, AVAIL2, USED2)) {
        let _ = fill_rx(&mut rx, &mem, &mut m);
    }
}

/// The vsock muxer on its own: the input is a sequence of guest packets (header, then
/// payload of the header's length, clipped); some ports have a host listener, so
/// connections open, carry data and close. Whatever arrives, the muxer never holds
/// more than its advertised buffer per connection for the guest, and drains.
pub fn vsock_muxer(data: &[u8]) {
    let Ok(dir) = tempfile::tempdir() else { return };
    let base = dir.path().join("v");
    // Host services on ports 1024 and 53, as the monitor has.
    let listeners: Vec<_> = [1024u32, 53]
        .iter()
        .filter_map(|p| {
            std::os::unix::net::UnixListener::bind(format!("{}_{p}", base.display())).ok()
        })
        .collect();
    let Ok(mut m) = Muxer::new(3, base, false) else {
        return;
    };
    let mut rest = data;
    let mut steps = 0;
    while rest.len() >= HDR_LEN && steps < 256 {
        let mut raw = [0u8; HDR_LEN];
        raw.copy_from_slice(&rest[..HDR_LEN]);
        // SAFETY: Header is packed plain old data for which every bit pattern is valid,
        // and `raw` is exactly its size.
        let h: Header = unsafe { std::ptr::read_unaligned(raw.as_ptr().cast()) };
        rest = &rest[HDR_LEN..];
        let len = (h.len as usize).min(rest.len()).min(64 << 10);
        m.on_guest_packet(&h, &rest[..len]);
        rest = &rest[len..];
        for l in &listeners {
            l.set_nonblocking(true).ok();
            while let Ok((s, _)) = l.accept() {
                use std::io::Write;
                let mut s = s;
                let _ = s.write_all(b"host says hi");
            }
        }
        m.on_host_ready();
        // The guest takes what is pending, in buffers of a size the input picks.
        let cap = 1 + (h.buf_alloc as usize % 8192);
        let mut drained = 0;
        while m.has_pending() && drained < 1024 {
            if m.next_for_guest(cap).is_none() {
                break;
            }
            drained += 1;
        }
        steps += 1;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn empty_and_tiny_inputs_are_fine() {
        for d in [&[][..], &[0], &[8, 1, 2, 3], &[255; 100]] {
            super::virtio_blk(d);
            super::virtio_net(d);
            super::virtio_vsock(d);
            super::vsock_muxer(d);
        }
    }
}
