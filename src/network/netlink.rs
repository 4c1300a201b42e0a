//! A small rtnetlink client: just the link, address and route requests twinbox makes
//! (bridge, veth pair with its peer in another namespace, master, up, address, default
//! route, delete). One request at a time, each acknowledged.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const NLMSG_HDR: usize = 16;
const NLMSG_ERROR: u16 = 2;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const NLA_F_NESTED: u16 = 0x8000;

/// A netlink request being built: header, fixed part, attributes (4-byte aligned).
struct Msg {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Msg {
    fn new(kind: u16, flags: u16, fixed: &[u8]) -> Msg {
        let mut buf = vec![0u8; NLMSG_HDR];
        buf[4..6].copy_from_slice(&kind.to_ne_bytes());
        let f = flags | libc::NLM_F_REQUEST as u16 | libc::NLM_F_ACK as u16;
        buf[6..8].copy_from_slice(&f.to_ne_bytes());
        buf.extend_from_slice(fixed);
        Msg {
            buf,
            nests: Vec::new(),
        }
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn attr(&mut self, kind: u16, data: &[u8]) -> &mut Msg {
        self.pad();
        let len = (4 + data.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self
    }

    fn str_attr(&mut self, kind: u16, s: &str) -> &mut Msg {
        let mut d = s.as_bytes().to_vec();
        d.push(0);
        self.attr(kind, &d)
    }

    fn begin(&mut self, kind: u16) -> &mut Msg {
        self.pad();
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&[0, 0]);
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        self
    }

    fn end(&mut self) -> &mut Msg {
        let start = self.nests.pop().expect("end() without begin()");
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    /// Append raw bytes (a nested ifinfomsg, already aligned).
    fn raw(&mut self, data: &[u8]) -> &mut Msg {
        self.pad();
        self.buf.extend_from_slice(data);
        self
    }

    fn finish(mut self, seq: u32) -> Vec<u8> {
        self.pad();
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

/// struct ifinfomsg.
fn ifinfo(index: i32, flags: u32, change: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0] = libc::AF_UNSPEC as u8;
    b[4..8].copy_from_slice(&index.to_ne_bytes());
    b[8..12].copy_from_slice(&flags.to_ne_bytes());
    b[12..16].copy_from_slice(&change.to_ne_bytes());
    b
}

/// The kernel's answer to one request: 0 or -errno.
fn parse_ack(buf: &[u8], seq: u32) -> Option<i32> {
    let mut off = 0;
    while off + NLMSG_HDR <= buf.len() {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().ok()?);
        let s = u32::from_ne_bytes(buf[off + 8..off + 12].try_into().ok()?);
        if len < NLMSG_HDR || off + len > buf.len() {
            return None;
        }
        if kind == NLMSG_ERROR && s == seq && len >= NLMSG_HDR + 4 {
            let e = i32::from_ne_bytes(buf[off + 16..off + 20].try_into().ok()?);
            return Some(e);
        }
        off += (len + 3) & !3;
    }
    None
}

/// An rtnetlink socket in the network namespace of the thread that opened it.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    pub fn open() -> io::Result<Netlink> {
        // SAFETY: socket(2) with constant arguments; the fd is owned right after.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Netlink { fd, seq: 0 })
    }

    fn request(&mut self, msg: Msg) -> io::Result<()> {
        self.seq += 1;
        let seq = self.seq;
        let data = msg.finish(seq);
        // SAFETY: sending our own buffer on our socket (the kernel is the default peer).
        let n = unsafe { libc::send(self.fd.as_raw_fd(), data.as_ptr().cast(), data.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; 8192];
        loop {
            // SAFETY: receiving into our own buffer of the given length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            match parse_ack(&buf[..n as usize], seq) {
                Some(0) => return Ok(()),
                Some(e) => return Err(io::Error::from_raw_os_error(-e)),
                None => continue,
            }
        }
    }

    /// Create a bridge device (down).
    pub fn add_bridge(&mut self, name: &str) -> io::Result<()> {
        let mut m = Msg::new(
            libc::RTM_NEWLINK,
            (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16,
            &ifinfo(0, 0, 0),
        );
        m.str_attr(IFLA_IFNAME, name);
        m.begin(IFLA_LINKINFO)
            .str_attr(IFLA_INFO_KIND, "bridge")
            .end();
        self.request(m)
    }

    /// Create a veth pair: `host` here, enslaved to `master` and up; `peer` in the
    /// network namespace `netns` (an open /proc/<pid>/ns/net), with the MAC `mac`.
    pub fn add_veth(
        &mut self,
        host: &str,
        master: u32,
        peer: &str,
        netns: RawFd,
        mac: [u8; 6],
    ) -> io::Result<()> {
        let up = libc::IFF_UP as u32;
        let mut m = Msg::new(
            libc::RTM_NEWLINK,
            (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16,
            &ifinfo(0, up, up),
        );
        m.str_attr(IFLA_IFNAME, host);
        m.attr(IFLA_MASTER, &master.to_ne_bytes());
        m.begin(IFLA_LINKINFO).str_attr(IFLA_INFO_KIND, "veth");
        m.begin(IFLA_INFO_DATA).begin(VETH_INFO_PEER);
        m.raw(&ifinfo(0, 0, 0));
        m.str_attr(IFLA_IFNAME, peer);
        m.attr(IFLA_ADDRESS, &mac);
        m.attr(IFLA_NET_NS_FD, &(netns as u32).to_ne_bytes());
        m.end().end().end();
        self.request(m)
    }

    /// Move a link into the network namespace `netns` (an open /proc/<pid>/ns/net).
    pub fn set_netns(&mut self, index: u32, netns: RawFd) -> io::Result<()> {
        let mut m = Msg::new(libc::RTM_NEWLINK, 0, &ifinfo(index as i32, 0, 0));
        m.attr(IFLA_NET_NS_FD, &(netns as u32).to_ne_bytes());
        self.request(m)
    }

    /// Set a link's master (bridge); 0 detaches it.
    pub fn set_master(&mut self, index: u32, master: u32) -> io::Result<()> {
        let mut m = Msg::new(libc::RTM_NEWLINK, 0, &ifinfo(index as i32, 0, 0));
        m.attr(IFLA_MASTER, &master.to_ne_bytes());
        self.request(m)
    }

    /// Bring a link up (or down).
    pub fn set_up(&mut self, index: u32, up: bool) -> io::Result<()> {
        let f = libc::IFF_UP as u32;
        let m = Msg::new(
            libc::RTM_NEWLINK,
            0,
            &ifinfo(index as i32, if up { f } else { 0 }, f),
        );
        self.request(m)
    }

    pub fn delete_link(&mut self, index: u32) -> io::Result<()> {
        let m = Msg::new(libc::RTM_DELLINK, 0, &ifinfo(index as i32, 0, 0));
        self.request(m)
    }

    /// Add an IPv4 address with its prefix (and broadcast) to a link.
    pub fn add_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let mut fixed = [0u8; 8];
        fixed[0] = libc::AF_INET as u8;
        fixed[1] = prefix;
        fixed[4..8].copy_from_slice(&index.to_ne_bytes());
        let mut m = Msg::new(
            libc::RTM_NEWADDR,
            (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16,
            &fixed,
        );
        m.attr(IFA_LOCAL, &addr.octets());
        m.attr(IFA_ADDRESS, &addr.octets());
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix as u32)
        };
        let bcast = Ipv4Addr::from(u32::from(addr) | !mask);
        m.attr(IFA_BROADCAST, &bcast.octets());
        self.request(m)
    }

    /// The default route via `gateway`.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> io::Result<()> {
        let mut fixed = [0u8; 12];
        fixed[0] = libc::AF_INET as u8;
        fixed[4] = libc::RT_TABLE_MAIN;
        fixed[5] = libc::RTPROT_BOOT;
        fixed[6] = libc::RT_SCOPE_UNIVERSE;
        fixed[7] = libc::RTN_UNICAST;
        let mut m = Msg::new(
            libc::RTM_NEWROUTE,
            (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16,
            &fixed,
        );
        m.attr(RTA_GATEWAY, &gateway.octets());
        self.request(m)
    }
}

/// The index of a network interface in the current namespace, if it exists.
pub fn index_of(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: if_nametoindex reads a NUL-terminated string we own.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// Run `f` on a thread that has joined the network namespace `ns` (a path such as
/// /proc/<pid>/ns/net). Sockets it opens stay in that namespace.
pub fn in_netns<T: Send>(
    ns: &std::path::Path,
    f: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    let file = std::fs::File::open(ns)?;
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(io::Error::from)?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("network namespace thread panicked")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_aligned_and_nests_sized() {
        let mut m = Msg::new(libc::RTM_NEWLINK, 0, &ifinfo(0, 0, 0));
        m.str_attr(IFLA_IFNAME, "br0"); // 4 + 4 bytes
        m.begin(IFLA_LINKINFO)
            .str_attr(IFLA_INFO_KIND, "bridge")
            .end();
        let b = m.finish(7);
        assert_eq!(b.len() % 4, 0);
        assert_eq!(
            u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize,
            b.len()
        );
        assert_eq!(u32::from_ne_bytes(b[8..12].try_into().unwrap()), 7);
        // ifname attribute right after the 16+16 byte headers
        assert_eq!(u16::from_ne_bytes(b[32..34].try_into().unwrap()), 8);
        assert_eq!(&b[36..40], b"br0\0");
        // the nest: 4 (header) + 4 + "bridge\0" (7) = 15 bytes, padded to 16 in the buffer
        assert_eq!(u16::from_ne_bytes(b[40..42].try_into().unwrap()), 15);
        assert_eq!(
            u16::from_ne_bytes(b[42..44].try_into().unwrap()),
            IFLA_LINKINFO | NLA_F_NESTED
        );
    }

    #[test]
    fn acks_are_matched_by_sequence() {
        let mut buf = vec![0u8; 36];
        buf[0..4].copy_from_slice(&36u32.to_ne_bytes());
        buf[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        buf[8..12].copy_from_slice(&3u32.to_ne_bytes());
        buf[16..20].copy_from_slice(&(-17i32).to_ne_bytes());
        assert_eq!(parse_ack(&buf, 3), Some(-17));
        assert_eq!(parse_ack(&buf, 4), None);
        assert_eq!(parse_ack(&buf[..10], 3), None);
    }
}
