//! virtio-vsock: host <-> guest sockets without a network, backed by unix sockets on
//! the host (see `muxer`).

mod muxer;
pub mod packet;

pub use muxer::Muxer;

use super::{read_config_bytes, Activation, Interrupt, VirtioDevice, TYPE_VSOCK};
use crate::vmm::memory::GuestMemoryMmap;
use event_manager::{EventOps, Events, MutEventSubscriber};
use packet::{Header, HDR_LEN};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use virtio_queue::{Queue, QueueT};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

const QUEUE_SIZE: u16 = 256;
const RX: usize = 0;
const TX: usize = 1;
/// Largest payload accepted from one TX packet.
const MAX_PKT: usize = 64 * 1024;

/// Take every packet the guest sent (TX queue) into the muxer.
pub fn process_tx(
    q: &mut Queue,
    mem: &GuestMemoryMmap,
    m: &mut Muxer,
) -> Result<bool, virtio_queue::Error> {
    let mut used = false;
    while let Some(chain) = q.pop_descriptor_chain(mem) {
        let head = chain.head_index();
        let mut r = chain.reader(mem)?;
        if let Ok(h) = r.read_obj::<Header>() {
            let len = (h.len as usize).min(r.available_bytes()).min(MAX_PKT);
            let mut payload = vec![0u8; len];
            if r.read_exact(&mut payload).is_ok() {
                m.on_guest_packet(&h, &payload);
            }
        }
        q.add_used(mem, head, 0)?;
        used = true;
    }
    Ok(used)
}

/// Fill the guest's RX buffers with what the muxer has for it.
pub fn fill_rx(
    q: &mut Queue,
    mem: &GuestMemoryMmap,
    m: &mut Muxer,
) -> Result<bool, virtio_queue::Error> {
    let mut used = false;
    while m.has_pending() {
        let Some(chain) = q.pop_descriptor_chain(mem) else {
            break;
        };
        let head = chain.head_index();
        let mut w = chain.writer(mem)?;
        let cap = w.available_bytes();
        if cap < HDR_LEN {
            q.add_used(mem, head, 0)?;
            used = true;
            continue;
        }
        match m.next_for_guest(cap - HDR_LEN) {
            Some((h, data)) => {
                let ok = w.write_obj(h).is_ok() && w.write_all(&data).is_ok();
                let len = if ok { w.bytes_written() } else { 0 };
                q.add_used(mem, head, u32::try_from(len).unwrap_or(u32::MAX))?;
                used = true;
            }
            None => {
                // Nothing after all: give the buffer back.
                q.set_next_avail(q.next_avail().wrapping_sub(1));
                break;
            }
        }
    }
    Ok(used)
}

#[derive(Debug)]
pub struct Vsock {
    cid: u64,
    muxer: Muxer,
    active: Option<(Arc<GuestMemoryMmap>, Vec<Queue>, Interrupt)>,
}

impl Vsock {
    pub fn new(cid: u64, muxer: Muxer) -> Vsock {
        Vsock {
            cid,
            muxer,
            active: None,
        }
    }

    /// Run the queues and the muxer once; notify the guest if anything moved.
    pub fn pump(&mut self, tx_kick: bool) {
        let Some((mem, queues, irq)) = self.active.as_mut() else {
            return;
        };
        let mut notify = false;
        if tx_kick {
            if let Some(q) = queues.get_mut(TX) {
                notify |= process_tx(q, mem, &mut self.muxer).unwrap_or(true);
            }
        }
        self.muxer.accept();
        self.muxer.on_host_ready();
        if let Some(q) = queues.get_mut(RX) {
            notify |= fill_rx(q, mem, &mut self.muxer).unwrap_or(true);
        }
        if notify {
            irq.signal_used();
        }
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        TYPE_VSOCK
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE; 3]
    }
    fn features(&self) -> u64 {
        0
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.cid.to_le_bytes(), offset, data);
    }
    fn activate(&mut self, a: Activation) -> Result<(), String> {
        if a.queues.len() != 3 {
            return Err("vsock needs 3 queues".into());
        }
        self.active = Some((a.mem, a.queues, a.interrupt));
        Ok(())
    }
    fn reset(&mut self) {
        self.active = None;
    }
    fn is_active(&self) -> bool {
        self.active.is_some()
    }
}

/// Event handler: the three queue eventfds and every host-side socket.
#[derive(Debug)]
pub struct VsockHandler {
    pub dev: Arc<Mutex<Vsock>>,
    pub queue_evts: Vec<Arc<EventFd>>,
    registered: HashMap<RawFd, EventSet>,
}

impl VsockHandler {
    pub fn new(dev: Arc<Mutex<Vsock>>, queue_evts: Vec<Arc<EventFd>>) -> VsockHandler {
        VsockHandler {
            dev,
            queue_evts,
            registered: HashMap::new(),
        }
    }

    /// Make epoll watch exactly what the muxer needs.
    fn sync_interests(&mut self, ops: &mut EventOps) {
        let wanted: Vec<(RawFd, EventSet)> = {
            let d = self.dev.lock().unwrap_or_else(|e| e.into_inner());
            d.muxer
                .interests()
                .into_iter()
                .map(|i| {
                    let mut s = EventSet::empty();
                    if i.read {
                        s |= EventSet::IN;
                    }
                    if i.write {
                        s |= EventSet::OUT;
                    }
                    (i.fd, s)
                })
                .collect()
        };
        let wanted_fds: Vec<RawFd> = wanted.iter().map(|(f, _)| *f).collect();
        let gone: Vec<RawFd> = self
            .registered
            .keys()
            .filter(|f| !wanted_fds.contains(f))
            .copied()
            .collect();
        for fd in gone {
            // The fd may already be closed (the connection dropped): epoll forgets closed
            // fds by itself, so a failed removal is fine.
            let _ = ops.remove(Events::new_raw(fd, EventSet::empty()));
            self.registered.remove(&fd);
        }
        for (fd, set) in wanted {
            match self.registered.get(&fd) {
                Some(s) if *s == set => {}
                Some(_) => {
                    let _ = ops.modify(Events::new_raw(fd, set));
                    self.registered.insert(fd, set);
                }
                None => {
                    if ops.add(Events::new_raw(fd, set)).is_ok() {
                        self.registered.insert(fd, set);
                    }
                }
            }
        }
    }
}

impl MutEventSubscriber for VsockHandler {
    fn init(&mut self, ops: &mut EventOps) {
        for e in &self.queue_evts {
            let _ = ops.add(Events::new(&**e, EventSet::IN));
        }
        self.sync_interests(ops);
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let fd = events.fd();
        let mut tx_kick = false;
        for (i, e) in self.queue_evts.iter().enumerate() {
            if e.as_raw_fd() == fd {
                let _ = e.read();
                tx_kick = i == TX;
            }
        }
        self.dev
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pump(tx_kick || fd >= 0);
        self.sync_interests(ops);
    }
}

/// For callers that want to write to a vsock host socket in tests.
pub fn write_line(s: &mut impl Write, line: &str) -> std::io::Result<()> {
    s.write_all(line.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::packet::*;
    use super::*;
    use std::os::unix::net::UnixListener;
    use virtio_queue::desc::{split::Descriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    fn hdr(op: u16, len: u32) -> Header {
        Header {
            src_cid: 3,
            dst_cid: HOST_CID,
            src_port: 777,
            dst_port: 1024,
            len,
            type_: TYPE_STREAM,
            op,
            flags: 0,
            buf_alloc: 65536,
            fwd_cnt: 0,
        }
    }

    #[test]
    fn tx_and_rx_queues_carry_a_connection() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("v");
        let listener = UnixListener::bind(format!("{}_1024", base.display())).unwrap();
        let mut m = Muxer::new(3, base, false).unwrap();
        let mem = crate::vmm::memory::create(1 << 20).unwrap();

        // The guest connects: REQUEST on the TX queue.
        mem.write_obj(hdr(OP_REQUEST, 0), GuestAddress(0x1000))
            .unwrap();
        let txq = MockSplitQueue::create(&mem, GuestAddress(0x10000), 16);
        txq.add_desc_chains(&[RawDescriptor::from(Descriptor::new(0x1000, 44, 0, 0))], 0)
            .unwrap();
        let mut tx: Queue = txq.create_queue().unwrap();
        assert!(process_tx(&mut tx, &mem, &mut m).unwrap());
        assert_eq!(txq.used().idx().load(), 1);
        let (mut host, _) = listener.accept().unwrap();

        // The device answers RESPONSE in the guest's RX buffer.
        let rxq = MockSplitQueue::create(&mem, GuestAddress(0x20000), 16);
        rxq.add_desc_chains(
            &[RawDescriptor::from(Descriptor::new(0x3000, 4096, 2, 0))],
            0,
        )
        .unwrap();
        let mut rx: Queue = rxq.create_queue().unwrap();
        assert!(fill_rx(&mut rx, &mem, &mut m).unwrap());
        let used = rxq.used().ring().ref_at(0).unwrap().load();
        assert_eq!(used.len() as usize, HDR_LEN);
        let h: Header = mem.read_obj(GuestAddress(0x3000)).unwrap();
        assert_eq!(
            ({ h.op }, { h.dst_port }, { h.src_port }),
            (OP_RESPONSE, 777, 1024)
        );

        // Guest data (header + payload in two descriptors) reaches the host socket.
        mem.write_obj(hdr(OP_RW, 5), GuestAddress(0x4000)).unwrap();
        mem.write_slice(b"hello", GuestAddress(0x5000)).unwrap();
        txq.add_desc_chains(
            &[
                RawDescriptor::from(Descriptor::new(0x4000, 44, 1, 2)),
                RawDescriptor::from(Descriptor::new(0x5000, 5, 0, 0)),
            ],
            1,
        )
        .unwrap();
        process_tx(&mut tx, &mem, &mut m).unwrap();
        let mut buf = [0u8; 5];
        use std::io::Read;
        host.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");

        // No RX buffer: a reply waits, nothing is lost.
        use std::io::Write as _;
        host.write_all(b"back").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        m.on_host_ready();
        assert!(!fill_rx(&mut rx, &mem, &mut m).unwrap());
        assert!(m.has_pending());
        rxq.add_desc_chains(
            &[RawDescriptor::from(Descriptor::new(0x6000, 4096, 2, 0))],
            1,
        )
        .unwrap();
        assert!(fill_rx(&mut rx, &mem, &mut m).unwrap());
        let h: Header = mem.read_obj(GuestAddress(0x6000)).unwrap();
        assert_eq!(({ h.op }, { h.len }), (OP_RW, 4));
        let mut p = [0u8; 4];
        mem.read_slice(&mut p, GuestAddress(0x6000 + HDR_LEN as u64))
            .unwrap();
        assert_eq!(&p, b"back");
    }
}
