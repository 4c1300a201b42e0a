//! The host side of vsock: guest connections mapped to unix sockets, Firecracker style.
//!
//! - The guest connects to port P: the muxer connects to the unix socket `<base>_P`.
//! - A host process connects to the unix socket `<base>` and writes `CONNECT P\n`: the
//!   muxer asks the guest (port P) and answers `OK <local port>\n` once it accepts.
//!
//! Flow control follows the virtio spec: each side advertises its receive buffer
//! (`buf_alloc`) and how much it has consumed (`fwd_cnt`); a sender never has more
//! than `buf_alloc - (sent - fwd_cnt)` bytes in flight.

use super::packet::*;
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

/// Our receive buffer per connection, advertised to the guest.
pub const BUF_ALLOC: u32 = 256 * 1024;
/// Most host->guest bytes buffered per connection before we stop reading the socket.
const TO_GUEST_MAX: usize = 256 * 1024;
/// First local port for host-initiated connections.
const LOCAL_PORT_BASE: u32 = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    /// Our (host-side) port.
    pub local: u32,
    /// The guest's port.
    pub peer: u32,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum State {
    /// Host-initiated, REQUEST sent, waiting for the guest's RESPONSE.
    Connecting,
    Established,
    /// We sent SHUTDOWN and wait for the guest's RST.
    Closing,
}

struct Conn {
    stream: UnixStream,
    state: State,
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
    /// Payload bytes we have sent to the guest.
    tx_cnt: u32,
    /// Payload bytes from the guest written to the socket.
    fwd_cnt: u32,
    fwd_cnt_sent: u32,
    to_guest: VecDeque<u8>,
    to_host: Vec<u8>,
    host_eof: bool,
    peer_shut: u32,
    /// Our SHUTDOWN was queued.
    shutdown_sent: bool,
}

impl Conn {
    fn new(stream: UnixStream, state: State) -> Conn {
        Conn {
            stream,
            state,
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
            tx_cnt: 0,
            fwd_cnt: 0,
            fwd_cnt_sent: 0,
            to_guest: VecDeque::new(),
            to_host: Vec::new(),
            host_eof: false,
            peer_shut: 0,
            shutdown_sent: false,
        }
    }

    /// Bytes the guest can still take.
    fn peer_free(&self) -> u32 {
        self.peer_buf_alloc
            .wrapping_sub(self.tx_cnt.wrapping_sub(self.peer_fwd_cnt))
            .min(self.peer_buf_alloc)
    }

    /// Write buffered guest data to the socket as far as it goes.
    fn flush_to_host(&mut self) {
        while !self.to_host.is_empty() {
            match self.stream.write(&self.to_host) {
                Ok(0) => break,
                Ok(n) => {
                    self.to_host.drain(..n);
                    self.fwd_cnt = self.fwd_cnt.wrapping_add(wrap32(n));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    // The host side is gone: drop what we cannot deliver.
                    let n = self.to_host.len();
                    self.to_host.clear();
                    self.fwd_cnt = self.fwd_cnt.wrapping_add(wrap32(n));
                    self.host_eof = true;
                }
            }
        }
    }

    /// Read from the socket while there is room.
    fn fill_from_host(&mut self) {
        let mut buf = [0u8; 16 * 1024];
        while !self.host_eof && self.to_guest.len() < TO_GUEST_MAX {
            let room = (TO_GUEST_MAX - self.to_guest.len()).min(buf.len());
            match self.stream.read(&mut buf[..room]) {
                Ok(0) => self.host_eof = true,
                Ok(n) => self.to_guest.extend(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => self.host_eof = true,
            }
        }
    }
}

/// What the device should watch on the host side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    pub fd: RawFd,
    pub read: bool,
    pub write: bool,
}

pub struct Muxer {
    guest_cid: u64,
    base: PathBuf,
    listener: Option<UnixListener>,
    conns: HashMap<Key, Conn>,
    /// Control packets waiting for an RX buffer.
    control: VecDeque<Header>,
    next_local: u32,
}

impl std::fmt::Debug for Muxer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Muxer").finish_non_exhaustive()
    }
}

impl Muxer {
    /// `base`: the unix socket path prefix. Host-initiated connections are accepted on
    /// `base` itself when `listen` is set.
    pub fn new(guest_cid: u64, base: PathBuf, listen: bool) -> io::Result<Muxer> {
        let listener = if listen {
            let _ = std::fs::remove_file(&base);
            let l = UnixListener::bind(&base)?;
            l.set_nonblocking(true)?;
            Some(l)
        } else {
            None
        };
        Ok(Muxer {
            guest_cid,
            base,
            listener,
            conns: HashMap::new(),
            control: VecDeque::new(),
            next_local: LOCAL_PORT_BASE,
        })
    }

    /// Guest-initiated connections go to `<base>_P` from now on (a jailed VMM sees
    /// the socket directory under another path than the one it bound in).
    pub fn connect_to(&mut self, base: PathBuf) {
        self.base = base;
    }

    fn header(&self, key: Key, op: u16, len: u32, flags: u32) -> Header {
        let (buf_alloc, fwd_cnt) = match self.conns.get(&key) {
            Some(c) => (BUF_ALLOC, c.fwd_cnt),
            None => (0, 0),
        };
        Header {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: key.local,
            dst_port: key.peer,
            len,
            type_: TYPE_STREAM,
            op,
            flags,
            buf_alloc,
            fwd_cnt,
        }
    }

    fn push_control(&mut self, key: Key, op: u16, flags: u32) {
        let h = self.header(key, op, 0, flags);
        if let Some(c) = self.conns.get_mut(&key) {
            c.fwd_cnt_sent = c.fwd_cnt;
        }
        self.control.push_back(h);
    }

    fn rst(&mut self, key: Key) {
        let h = Header {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: key.local,
            dst_port: key.peer,
            type_: TYPE_STREAM,
            op: OP_RST,
            ..Default::default()
        };
        self.control.push_back(h);
    }

    /// A packet from the guest (TX queue).
    pub fn on_guest_packet(&mut self, h: &Header, payload: &[u8]) {
        let key = Key {
            local: h.dst_port,
            peer: h.src_port,
        };
        let (op, ty, dst_cid) = (h.op, h.type_, h.dst_cid);
        if ty != TYPE_STREAM || dst_cid != HOST_CID {
            if op != OP_RST {
                self.rst(key);
            }
            return;
        }
        if let Some(c) = self.conns.get_mut(&key) {
            c.peer_buf_alloc = h.buf_alloc;
            c.peer_fwd_cnt = h.fwd_cnt;
        }
        match op {
            OP_REQUEST => {
                if self.conns.contains_key(&key) {
                    self.rst(key);
                    return;
                }
                let path = format!("{}_{}", self.base.display(), key.local);
                match UnixStream::connect(&path).and_then(|s| {
                    s.set_nonblocking(true)?;
                    Ok(s)
                }) {
                    Ok(stream) => {
                        let mut c = Conn::new(stream, State::Established);
                        c.peer_buf_alloc = h.buf_alloc;
                        c.peer_fwd_cnt = h.fwd_cnt;
                        self.conns.insert(key, c);
                        self.push_control(key, OP_RESPONSE, 0);
                    }
                    Err(_) => self.rst(key),
                }
            }
            OP_RESPONSE => match self.conns.get_mut(&key) {
                Some(c) if c.state == State::Connecting => {
                    c.state = State::Established;
                    let _ = c.stream.set_nonblocking(false);
                    let ok = writeln!(c.stream, "OK {}", key.local);
                    let _ = c.stream.set_nonblocking(true);
                    if ok.is_err() {
                        self.conns.remove(&key);
                        self.rst(key);
                    }
                }
                _ => self.rst(key),
            },
            OP_RW => match self.conns.get_mut(&key) {
                Some(c) if c.state != State::Connecting => {
                    c.to_host.extend_from_slice(payload);
                    c.flush_to_host();
                    if c.fwd_cnt.wrapping_sub(c.fwd_cnt_sent) >= BUF_ALLOC / 4 {
                        self.push_control(key, OP_CREDIT_UPDATE, 0);
                    }
                }
                _ => self.rst(key),
            },
            OP_CREDIT_UPDATE => {
                if !self.conns.contains_key(&key) {
                    self.rst(key);
                }
            }
            OP_CREDIT_REQUEST => {
                if self.conns.contains_key(&key) {
                    self.push_control(key, OP_CREDIT_UPDATE, 0);
                } else {
                    self.rst(key);
                }
            }
            OP_SHUTDOWN => {
                let done = match self.conns.get_mut(&key) {
                    Some(c) => {
                        c.peer_shut |= h.flags;
                        if c.peer_shut & SHUTDOWN_SEND != 0 {
                            c.flush_to_host();
                            let _ = c.stream.shutdown(std::net::Shutdown::Write);
                        }
                        c.peer_shut & (SHUTDOWN_RCV | SHUTDOWN_SEND)
                            == (SHUTDOWN_RCV | SHUTDOWN_SEND)
                    }
                    None => true,
                };
                if done {
                    self.conns.remove(&key);
                    self.rst(key);
                }
            }
            OP_RST => {
                if let Some(mut c) = self.conns.remove(&key) {
                    c.flush_to_host();
                }
            }
            _ => self.rst(key),
        }
    }

    /// The next packet for the guest, with at most `max_payload` bytes of data.
    pub fn next_for_guest(&mut self, max_payload: usize) -> Option<(Header, Vec<u8>)> {
        if let Some(h) = self.control.pop_front() {
            return Some((h, Vec::new()));
        }
        let keys: Vec<Key> = self.conns.keys().copied().collect();
        for key in keys {
            let Some(c) = self.conns.get_mut(&key) else {
                continue;
            };
            if c.state != State::Established {
                continue;
            }
            c.fill_from_host();
            let n = (c.peer_free() as usize)
                .min(max_payload)
                .min(c.to_guest.len());
            if n > 0 {
                let data: Vec<u8> = c.to_guest.drain(..n).collect();
                c.tx_cnt = c.tx_cnt.wrapping_add(wrap32(n));
                c.fwd_cnt_sent = c.fwd_cnt;
                let h = self.header(key, OP_RW, wrap32(n), 0);
                return Some((h, data));
            }
            if c.host_eof && c.to_guest.is_empty() && !c.shutdown_sent {
                c.shutdown_sent = true;
                c.state = State::Closing;
                let h = self.header(key, OP_SHUTDOWN, 0, SHUTDOWN_RCV | SHUTDOWN_SEND);
                return Some((h, Vec::new()));
            }
        }
        None
    }

    /// Accept host-initiated connections (`CONNECT <port>\n`).
    pub fn accept(&mut self) {
        loop {
            let Some(l) = &self.listener else { return };
            let Ok((mut s, _)) = l.accept() else { return };
            let _ = s.set_nonblocking(false);
            let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
            let mut line = Vec::new();
            let mut b = [0u8; 1];
            while line.len() < 32 {
                match s.read(&mut b) {
                    Ok(1) if b[0] == b'\n' => break,
                    Ok(1) => line.push(b[0]),
                    _ => break,
                }
            }
            let port = String::from_utf8_lossy(&line)
                .strip_prefix("CONNECT ")
                .and_then(|p| p.trim().parse::<u32>().ok());
            let Some(port) = port else { continue };
            let _ = s.set_read_timeout(None);
            let _ = s.set_nonblocking(true);
            let local = self.next_local;
            self.next_local = self.next_local.wrapping_add(1).max(LOCAL_PORT_BASE);
            let key = Key { local, peer: port };
            self.conns.insert(key, Conn::new(s, State::Connecting));
            self.push_control(key, OP_REQUEST, 0);
        }
    }

    /// Service host-side readiness: flush pending writes, drop dead connections.
    pub fn on_host_ready(&mut self) {
        for c in self.conns.values_mut() {
            c.flush_to_host();
            c.fill_from_host();
        }
    }

    /// Whether any packet is waiting for the guest.
    pub fn has_pending(&self) -> bool {
        !self.control.is_empty()
            || self.conns.values().any(|c| {
                c.state == State::Established
                    && ((!c.to_guest.is_empty() && c.peer_free() > 0)
                        || (c.host_eof && !c.shutdown_sent))
            })
    }

    /// The fds to watch and how.
    pub fn interests(&self) -> Vec<Interest> {
        let mut v: Vec<Interest> = self
            .conns
            .values()
            .map(|c| Interest {
                fd: c.stream.as_raw_fd(),
                read: !c.host_eof
                    && c.to_guest.len() < TO_GUEST_MAX
                    && c.state != State::Connecting,
                write: !c.to_host.is_empty(),
            })
            .collect();
        if let Some(l) = &self.listener {
            v.push(Interest {
                fd: l.as_raw_fd(),
                read: true,
                write: false,
            });
        }
        v
    }

    pub fn listener_fd(&self) -> Option<RawFd> {
        self.listener.as_ref().map(|l| l.as_raw_fd())
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }
}

/// vsock's byte counters are modulo 2^32 (virtio spec 5.10.6.3): a count's low 32 bits.
fn wrap32(n: usize) -> u32 {
    (n as u64 & 0xffff_ffff) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    const GCID: u64 = 3;

    fn pkt(op: u16, src_port: u32, dst_port: u32, flags: u32) -> Header {
        Header {
            src_cid: GCID,
            dst_cid: HOST_CID,
            src_port,
            dst_port,
            type_: TYPE_STREAM,
            op,
            flags,
            buf_alloc: 4096,
            fwd_cnt: 0,
            len: 0,
        }
    }

    fn drain(m: &mut Muxer) -> Vec<(Header, Vec<u8>)> {
        let mut v = Vec::new();
        while let Some(p) = m.next_for_guest(4096 - HDR_LEN) {
            v.push(p);
        }
        v
    }

    #[test]
    fn guest_connects_to_a_host_socket_and_data_flows_both_ways() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("v.sock");
        let listener = UnixListener::bind(format!("{}_1024", base.display())).unwrap();
        let mut m = Muxer::new(GCID, base, false).unwrap();
        m.on_guest_packet(&pkt(OP_REQUEST, 5000, 1024, 0), &[]);
        let (mut host, _) = listener.accept().unwrap();
        let out = drain(&mut m);
        assert_eq!(out.len(), 1);
        let h = out[0].0;
        assert_eq!(
            ({ h.op }, { h.src_port }, { h.dst_port }, { h.dst_cid }),
            (OP_RESPONSE, 1024, 5000, GCID)
        );
        assert_eq!({ h.buf_alloc }, BUF_ALLOC);

        // guest -> host
        let mut w = pkt(OP_RW, 5000, 1024, 0);
        w.len = 5;
        m.on_guest_packet(&w, b"hello");
        let mut buf = [0u8; 5];
        host.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");

        // host -> guest, bounded by the guest's credit (4096)
        host.write_all(&vec![7u8; 6000]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let out = drain(&mut m);
        let total: usize = out.iter().map(|(_, p)| p.len()).sum();
        assert_eq!(total, 4096, "never more than the peer's buffer in flight");
        assert!(out
            .iter()
            .all(|(h, p)| { h.op } == OP_RW && { h.len } as usize == p.len()));
        // the guest consumes and says so: the rest flows
        let mut cu = pkt(OP_CREDIT_UPDATE, 5000, 1024, 0);
        cu.fwd_cnt = 4096;
        m.on_guest_packet(&cu, &[]);
        let total: usize = drain(&mut m).iter().map(|(_, p)| p.len()).sum();
        assert_eq!(total, 6000 - 4096);

        // host closes: guest gets SHUTDOWN, then its RST ends the connection
        drop(host);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let out = drain(&mut m);
        assert_eq!({ out.last().unwrap().0.op }, OP_SHUTDOWN);
        m.on_guest_packet(&pkt(OP_RST, 5000, 1024, 0), &[]);
        assert_eq!(m.connections(), 0);
    }

    #[test]
    fn refused_and_unknown_connections_get_rst() {
        let d = tempfile::tempdir().unwrap();
        let mut m = Muxer::new(GCID, d.path().join("v.sock"), false).unwrap();
        m.on_guest_packet(&pkt(OP_REQUEST, 5000, 9999, 0), &[]);
        assert_eq!({ drain(&mut m)[0].0.op }, OP_RST);
        m.on_guest_packet(&pkt(OP_RW, 1, 2, 0), b"x");
        assert_eq!({ drain(&mut m)[0].0.op }, OP_RST);
        // no RST in reply to an RST
        m.on_guest_packet(&pkt(OP_RST, 1, 2, 0), &[]);
        assert!(drain(&mut m).is_empty());
    }

    #[test]
    fn guest_shutdown_closes_the_host_socket() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("v.sock");
        let listener = UnixListener::bind(format!("{}_7", base.display())).unwrap();
        let mut m = Muxer::new(GCID, base, false).unwrap();
        m.on_guest_packet(&pkt(OP_REQUEST, 10, 7, 0), &[]);
        let (mut host, _) = listener.accept().unwrap();
        drain(&mut m);
        m.on_guest_packet(&pkt(OP_SHUTDOWN, 10, 7, SHUTDOWN_RCV | SHUTDOWN_SEND), &[]);
        assert_eq!({ drain(&mut m)[0].0.op }, OP_RST);
        let mut buf = Vec::new();
        assert_eq!(host.read_to_end(&mut buf).unwrap(), 0, "host sees EOF");
        assert_eq!(m.connections(), 0);
    }

    #[test]
    fn host_initiated_connect() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("v.sock");
        let mut m = Muxer::new(GCID, base.clone(), true).unwrap();
        let mut client = UnixStream::connect(&base).unwrap();
        client.write_all(b"CONNECT 52\n").unwrap();
        m.accept();
        let out = drain(&mut m);
        let h = out[0].0;
        assert_eq!(({ h.op }, { h.dst_port }), (OP_REQUEST, 52));
        let local = h.src_port;
        assert!(local >= LOCAL_PORT_BASE);
        m.on_guest_packet(&pkt(OP_RESPONSE, 52, local, 0), &[]);
        let mut line = [0u8; 64];
        let n = client.read(&mut line).unwrap();
        assert_eq!(
            std::str::from_utf8(&line[..n]).unwrap(),
            format!("OK {local}\n")
        );
    }
}
