//! Set-ups for the criterion benches of the virtqueue path (virtio-queue's mock
//! queues, behind its `test-utils` feature, are only available to tests, so the bench
//! builds its own split queue in guest memory).

use super::devices::virtio::block::{process_queue, RequestHeader};
use super::memory::{self, GuestMemoryMmap};
use std::io;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};

struct Ram(Vec<u8>);

impl super::devices::virtio::block::Disk for Ram {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let o = offset as usize;
        buf.copy_from_slice(&self.0[o..o + buf.len()]);
        Ok(())
    }
    fn write_at(&self, _buf: &[u8], _offset: u64) -> io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
}

/// A virtio-blk queue holding `n` 4 KiB read requests.
pub struct BlkReads {
    mem: GuestMemoryMmap,
    queue: Queue,
    disk: Ram,
}

impl std::fmt::Debug for BlkReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlkReads").finish_non_exhaustive()
    }
}

const DESC: u64 = 0x10_0000;
const AVAIL: u64 = 0x11_0000;
const USED: u64 = 0x12_0000;
const DATA: u64 = 0x20_0000;

pub fn blk_reads(n: u16) -> BlkReads {
    let mem = memory::create(64 << 20).expect("guest memory");
    let size = 256u16;
    let mut queue = Queue::new(size).expect("queue");
    queue.set_size(size);
    queue.set_desc_table_address(Some(DESC as u32), Some(0));
    queue.set_avail_ring_address(Some(AVAIL as u32), Some(0));
    queue.set_used_ring_address(Some(USED as u32), Some(0));
    queue.set_ready(true);
    for i in 0..n {
        let base = DATA + u64::from(i) * 0x2000;
        let hdr = RequestHeader {
            type_: 0,
            ioprio: 0,
            sector: u64::from(i) * 8,
        };
        mem.write_obj(hdr, GuestAddress(base)).expect("header");
        // Three descriptors per request: header, 4 KiB data (write), status (write).
        let d = u64::from(i) * 3;
        let write_desc = |idx: u64, addr: u64, len: u32, flags: u16, next: u16| {
            let off = DESC + idx * 16;
            mem.write_obj(addr, GuestAddress(off)).expect("desc");
            mem.write_obj(len, GuestAddress(off + 8)).expect("desc");
            mem.write_obj(flags, GuestAddress(off + 12)).expect("desc");
            mem.write_obj(next, GuestAddress(off + 14)).expect("desc");
        };
        write_desc(d, base, 16, 1, (d + 1) as u16);
        write_desc(d + 1, base + 0x100, 4096, 1 | 2, (d + 2) as u16);
        write_desc(d + 2, base + 0x1100, 1, 2, 0);
        mem.write_obj(d as u16, GuestAddress(AVAIL + 4 + u64::from(i) * 2))
            .expect("avail");
    }
    mem.write_obj(n, GuestAddress(AVAIL + 2))
        .expect("avail idx");
    BlkReads {
        mem,
        queue,
        disk: Ram(vec![7u8; 1 << 20]),
    }
}

impl BlkReads {
    /// Process the queue; returns whether the guest would be notified.
    pub fn run(&mut self) -> bool {
        process_queue(&mut self.queue, &self.mem, &self.disk, false, b"bench").expect("queue")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn all_requests_are_served() {
        let mut b = super::blk_reads(8);
        assert!(b.run());
        use vm_memory::Bytes;
        let used_idx: u16 = b
            .mem
            .read_obj(vm_memory::GuestAddress(super::USED + 2))
            .unwrap();
        assert_eq!(used_idx, 8);
    }
}
