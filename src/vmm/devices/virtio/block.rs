//! virtio-blk on a raw file: read, write, flush, get-id; read-only or read-write.

use super::{read_config_bytes, Activation, Interrupt, VirtioDevice, TYPE_BLOCK};
use crate::vmm::memory::GuestMemoryMmap;
use event_manager::{EventOps, Events, MutEventSubscriber};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};
use virtio_queue::{Queue, QueueT};
use vm_memory::ByteValued;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

pub const SECTOR_SIZE: u64 = 512;
const QUEUE_SIZE: u16 = 256;

const F_SEG_MAX: u64 = 1 << 2;
const F_RO: u64 = 1 << 5;
const F_FLUSH: u64 = 1 << 9;
/// Segments per request we accept (guest hint).
const SEG_MAX: u32 = 128;

const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;
const ID_BYTES: usize = 20;

/// The request header the driver puts first.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct RequestHeader {
    pub type_: u32,
    pub ioprio: u32,
    pub sector: u64,
}
// SAFETY: plain old data of three integers, no padding.
unsafe impl ByteValued for RequestHeader {}

/// Where sectors live.
pub trait Disk {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    fn flush(&self) -> io::Result<()>;
    fn size(&self) -> u64;
}

impl Disk for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }
    fn flush(&self) -> io::Result<()> {
        self.sync_data()
    }
    fn size(&self) -> u64 {
        self.metadata().map(|m| m.len()).unwrap_or(0)
    }
}

/// A disk file whose size is read once, when the device is made: a guest cannot
/// change it, and a jailed VMM's device thread has no stat(2).
#[derive(Debug)]
pub struct SizedFile {
    file: File,
    size: u64,
}

impl SizedFile {
    pub fn new(file: File) -> SizedFile {
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        SizedFile { file, size }
    }
}

impl Disk for SizedFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        Disk::read_at(&self.file, buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        Disk::write_at(&self.file, buf, offset)
    }
    fn flush(&self) -> io::Result<()> {
        Disk::flush(&self.file)
    }
    fn size(&self) -> u64 {
        self.size
    }
}

/// Process one request chain; returns the bytes written into the guest's buffers.
pub fn handle_request<D: Disk>(
    mem: &GuestMemoryMmap,
    chain: virtio_queue::DescriptorChain<&GuestMemoryMmap>,
    disk: &D,
    read_only: bool,
    id: &[u8],
) -> Result<u32, virtio_queue::Error> {
    let mut reader = chain.clone().reader(mem)?;
    let mut writer = chain.writer(mem)?;
    let status_at = writer.available_bytes().saturating_sub(1);
    let (mut data_w, mut status_w) = if writer.available_bytes() > 0 {
        let s = writer.split_at(status_at)?;
        (writer, Some(s))
    } else {
        (writer, None)
    };
    let status = match reader.read_obj::<RequestHeader>() {
        Err(_) => S_IOERR,
        Ok(h) => {
            let offset = h.sector.checked_mul(SECTOR_SIZE);
            match h.type_ {
                T_IN => {
                    let len = data_w.available_bytes();
                    match offset.filter(|o| o + len as u64 <= disk.size()) {
                        None => S_IOERR,
                        Some(o) => {
                            let mut buf = vec![0u8; len];
                            match disk.read_at(&mut buf, o) {
                                Ok(()) if data_w.write_all(&buf).is_ok() => S_OK,
                                _ => S_IOERR,
                            }
                        }
                    }
                }
                T_OUT if read_only => S_IOERR,
                T_OUT => {
                    let len = reader.available_bytes();
                    match offset.filter(|o| o + len as u64 <= disk.size()) {
                        None => S_IOERR,
                        Some(o) => {
                            let mut buf = vec![0u8; len];
                            match reader.read_exact(&mut buf) {
                                Ok(()) if disk.write_at(&buf, o).is_ok() => S_OK,
                                _ => S_IOERR,
                            }
                        }
                    }
                }
                T_FLUSH => {
                    if read_only || disk.flush().is_ok() {
                        S_OK
                    } else {
                        S_IOERR
                    }
                }
                T_GET_ID => {
                    let mut idb = [0u8; ID_BYTES];
                    let n = id.len().min(ID_BYTES);
                    idb[..n].copy_from_slice(&id[..n]);
                    let n = data_w.available_bytes().min(ID_BYTES);
                    if data_w.write_all(&idb[..n]).is_ok() {
                        S_OK
                    } else {
                        S_IOERR
                    }
                }
                _ => S_UNSUPP,
            }
        }
    };
    // A chain's length is a u32 sum of u32 descriptor lengths.
    let mut written = u32::try_from(data_w.bytes_written()).unwrap_or(u32::MAX);
    if let Some(s) = status_w.as_mut() {
        if s.write_all(&[status]).is_ok() {
            written += 1;
        }
    }
    Ok(written)
}

/// Drain the queue; true if the guest must be notified.
pub fn process_queue<D: Disk>(
    q: &mut Queue,
    mem: &GuestMemoryMmap,
    disk: &D,
    read_only: bool,
    id: &[u8],
) -> Result<bool, virtio_queue::Error> {
    let mut used_any = false;
    loop {
        q.disable_notification(mem)?;
        let mut popped = false;
        while let Some(chain) = q.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let len = handle_request(mem, chain, disk, read_only, id)?;
            q.add_used(mem, head, len)?;
            used_any = true;
            popped = true;
        }
        // More is said to be available but nothing could be taken: the guest's ring
        // is broken (an index more than a queue ahead). Stop rather than spin; the
        // guest's next notification tries again.
        if !q.enable_notification(mem)? || !popped {
            break;
        }
    }
    Ok(used_any && q.needs_notification(mem)?)
}

/// The block device.
#[derive(Debug)]
pub struct Block {
    disk: SizedFile,
    read_only: bool,
    id: String,
    capacity_sectors: u64,
    active: Option<(Arc<GuestMemoryMmap>, Queue, Interrupt)>,
}

impl Block {
    pub fn new(file: File, read_only: bool, id: &str) -> Block {
        let disk = SizedFile::new(file);
        let capacity_sectors = disk.size / SECTOR_SIZE;
        Block {
            disk,
            read_only,
            id: id.to_string(),
            capacity_sectors,
            active: None,
        }
    }

    /// The queue was notified: process it.
    pub fn process(&mut self) {
        if let Some((mem, q, irq)) = self.active.as_mut() {
            match process_queue(q, mem, &self.disk, self.read_only, self.id.as_bytes()) {
                Ok(true) => irq.signal_used(),
                Ok(false) => {}
                Err(_) => irq.signal_used(),
            }
        }
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        TYPE_BLOCK
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE]
    }
    fn features(&self) -> u64 {
        let mut f = F_FLUSH | F_SEG_MAX;
        if self.read_only {
            f |= F_RO;
        }
        f
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut cfg = [0u8; 16];
        cfg[..8].copy_from_slice(&self.capacity_sectors.to_le_bytes());
        cfg[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        read_config_bytes(&cfg, offset, data);
    }
    fn activate(&mut self, a: Activation) -> Result<(), String> {
        let q = a.queues.into_iter().next().ok_or("no queue")?;
        self.active = Some((a.mem, q, a.interrupt));
        Ok(())
    }
    fn reset(&mut self) {
        self.active = None;
    }
    fn is_active(&self) -> bool {
        self.active.is_some()
    }
}

/// Event handler: the queue's ioeventfd.
#[derive(Debug)]
pub struct BlockHandler {
    pub dev: Arc<Mutex<Block>>,
    pub queue_evt: Arc<EventFd>,
}

impl MutEventSubscriber for BlockHandler {
    fn init(&mut self, ops: &mut EventOps) {
        let _ = ops.add(Events::new(&*self.queue_evt, EventSet::IN));
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        if events.fd() == self.queue_evt.as_raw_fd() {
            let _ = self.queue_evt.read();
            self.dev.lock().unwrap_or_else(|e| e.into_inner()).process();
        }
    }
}

/// Flush-on-write helper for tests and callers that need `Write`.
pub fn sync(f: &mut File) -> io::Result<()> {
    f.flush()?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use virtio_queue::desc::{split::Descriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    struct MemDisk(RefCell<Vec<u8>>, RefCell<u32>);
    impl Disk for MemDisk {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            let d = self.0.borrow();
            buf.copy_from_slice(&d[offset as usize..offset as usize + buf.len()]);
            Ok(())
        }
        fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
            self.0.borrow_mut()[offset as usize..offset as usize + buf.len()].copy_from_slice(buf);
            Ok(())
        }
        fn flush(&self) -> io::Result<()> {
            *self.1.borrow_mut() += 1;
            Ok(())
        }
        fn size(&self) -> u64 {
            self.0.borrow().len() as u64
        }
    }

    const NEXT: u16 = 1;
    const WRITE: u16 = 2;

    fn request(
        ty: u32,
        sector: u64,
        data_len: u32,
        data_writable: bool,
    ) -> (GuestMemoryMmap, Vec<RawDescriptor>) {
        let mem = crate::vmm::memory::create(1 << 20).unwrap();
        mem.write_obj(
            RequestHeader {
                type_: ty,
                ioprio: 0,
                sector,
            },
            GuestAddress(0x1000),
        )
        .unwrap();
        let mut descs = vec![RawDescriptor::from(Descriptor::new(0x1000, 16, NEXT, 1))];
        if data_len > 0 {
            let f = NEXT | if data_writable { WRITE } else { 0 };
            descs.push(RawDescriptor::from(Descriptor::new(0x2000, data_len, f, 2)));
        }
        let n = descs.len() as u16;
        descs.push(RawDescriptor::from(Descriptor::new(
            0x3000,
            1,
            WRITE,
            n + 1,
        )));
        (mem, descs)
    }

    fn run(mem: &GuestMemoryMmap, descs: &[RawDescriptor], disk: &MemDisk, ro: bool) -> (u32, u8) {
        let vq = MockSplitQueue::new(mem, 16);
        vq.add_desc_chains(descs, 0).unwrap();
        let mut q: Queue = vq.create_queue().unwrap();
        let notify = process_queue(&mut q, mem, disk, ro, b"serial-1").unwrap();
        assert!(notify);
        assert_eq!(vq.used().idx().load(), 1);
        let e = vq.used().ring().ref_at(0).unwrap().load();
        let status: u8 = mem.read_obj(GuestAddress(0x3000)).unwrap();
        (e.len(), status)
    }

    fn disk() -> MemDisk {
        let mut d = vec![0u8; 4096];
        d[512..1024].fill(0xab);
        MemDisk(RefCell::new(d), RefCell::new(0))
    }

    #[test]
    fn reads_sectors() {
        let (mem, descs) = request(T_IN, 1, 512, true);
        let d = disk();
        assert_eq!(run(&mem, &descs, &d, false), (513, S_OK));
        let mut buf = [0u8; 512];
        mem.read_slice(&mut buf, GuestAddress(0x2000)).unwrap();
        assert!(buf.iter().all(|b| *b == 0xab));
    }

    #[test]
    fn writes_sectors_unless_read_only() {
        let (mem, descs) = request(T_OUT, 2, 512, false);
        mem.write_slice(&[7u8; 512], GuestAddress(0x2000)).unwrap();
        let d = disk();
        assert_eq!(run(&mem, &descs, &d, false), (1, S_OK));
        assert!(d.0.borrow()[1024..1536].iter().all(|b| *b == 7));
        let d = disk();
        assert_eq!(run(&mem, &descs, &d, true), (1, S_IOERR));
        assert!(d.0.borrow()[1024..1536].iter().all(|b| *b == 0));
    }

    #[test]
    fn out_of_range_flush_id_and_unknown() {
        let (mem, descs) = request(T_IN, 100, 512, true);
        assert_eq!(run(&mem, &descs, &disk(), false).1, S_IOERR);
        let (mem, descs) = request(T_FLUSH, 0, 0, false);
        let d = disk();
        assert_eq!(run(&mem, &descs, &d, false), (1, S_OK));
        assert_eq!(*d.1.borrow(), 1);
        let (mem, descs) = request(T_GET_ID, 0, 20, true);
        assert_eq!(run(&mem, &descs, &disk(), false), (21, S_OK));
        let mut id = [0u8; 8];
        mem.read_slice(&mut id, GuestAddress(0x2000)).unwrap();
        assert_eq!(&id, b"serial-1");
        let (mem, descs) = request(99, 0, 0, false);
        assert_eq!(run(&mem, &descs, &disk(), false).1, S_UNSUPP);
    }

    #[test]
    fn config_reports_capacity() {
        let f = tempfile::tempfile().unwrap();
        f.set_len(1 << 20).unwrap();
        let b = Block::new(f, true, "x");
        let mut c = [0u8; 8];
        b.read_config(0, &mut c);
        assert_eq!(u64::from_le_bytes(c), 2048);
        assert!(b.features() & F_RO != 0);
    }
}
