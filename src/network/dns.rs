//! The embedded DNS responder. Containers on a user network ask it (at 127.0.0.11) for
//! each other's names and aliases; it answers from the state store at the moment of the
//! question, so containers started later are found too, and forwards every other name
//! to the host's resolvers. The monitor runs it: for a process container on a socket in
//! the container's network namespace, for a microVM behind the agent's vsock relay.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

const TYPE_A: u16 = 1;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_NXDOMAIN: u8 = 3;

/// The single question of a query.
#[derive(Debug, PartialEq)]
pub struct Query {
    pub id: u16,
    /// Lower-case, without the trailing dot.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// Flags word of the query (opcode and RD are echoed).
    pub flags: u16,
    /// The question section as it came (name, type, class).
    pub question: Vec<u8>,
}

pub fn parse_query(b: &[u8]) -> Option<Query> {
    if b.len() < 12 {
        return None;
    }
    let id = u16::from_be_bytes([b[0], b[1]]);
    let flags = u16::from_be_bytes([b[2], b[3]]);
    let qd = u16::from_be_bytes([b[4], b[5]]);
    if flags & 0x8000 != 0 || qd != 1 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *b.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        if len & 0xc0 != 0 || labels.len() > 127 {
            return None;
        }
        let l = b.get(i..i + len)?;
        labels.push(String::from_utf8_lossy(l).to_ascii_lowercase());
        i += len;
    }
    let t = b.get(i..i + 4)?;
    let qtype = u16::from_be_bytes([t[0], t[1]]);
    let qclass = u16::from_be_bytes([t[2], t[3]]);
    Some(Query {
        id,
        name: labels.join("."),
        qtype,
        qclass,
        flags,
        question: b[12..i + 4].to_vec(),
    })
}

/// A response to `q`: the A records in `ips` (those that fit the question), `rcode`.
pub fn response(q: &Query, ips: &[Ipv4Addr], rcode: u8) -> Vec<u8> {
    let wants_a = (q.qtype == TYPE_A || q.qtype == TYPE_ANY) && q.qclass == CLASS_IN;
    let answers: &[Ipv4Addr] = if wants_a && rcode == 0 { ips } else { &[] };
    let mut out = Vec::with_capacity(12 + q.question.len() + 16 * answers.len());
    out.extend_from_slice(&q.id.to_be_bytes());
    // QR, the query's opcode and RD, AA, RA, rcode.
    let flags = 0x8000 | (q.flags & 0x7900) | 0x0400 | 0x0080 | rcode as u16;
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&q.question);
    for ip in answers {
        out.extend_from_slice(&[0xc0, 12]); // the name: a pointer to the question's
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes()); // TTL 0: containers come and go
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&ip.octets());
    }
    out
}

/// How a responder finds answers.
pub trait Resolver: Send + Sync {
    /// Addresses of a container name/alias on the asker's networks; None if the name
    /// is not a container's.
    fn lookup(&self, name: &str) -> Option<Vec<Ipv4Addr>>;
    /// Ask the host's resolvers; None when there are none or none answered.
    fn forward(&self, query: &[u8]) -> Option<Vec<u8>>;
}

/// Answer one query datagram (None: not a query, ignore it).
pub fn handle(r: &dyn Resolver, query: &[u8]) -> Option<Vec<u8>> {
    let q = parse_query(query)?;
    if let Some(ips) = r.lookup(&q.name) {
        return Some(response(&q, &ips, 0));
    }
    if !q.name.contains('.') {
        return Some(response(&q, &[], RCODE_NXDOMAIN));
    }
    Some(
        r.forward(query)
            .unwrap_or_else(|| response(&q, &[], RCODE_SERVFAIL)),
    )
}

/// The host's nameservers, from its resolv.conf text.
pub fn nameservers(resolv_conf: &str) -> Vec<Ipv4Addr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "nameserver").then_some(())?;
            w.next()?.parse().ok()
        })
        .collect()
}

/// Send `query` to each server in turn, two seconds each.
pub fn forward_udp(servers: &[Ipv4Addr], query: &[u8]) -> Option<Vec<u8>> {
    for s in servers {
        let Ok(sock) = UdpSocket::bind("0.0.0.0:0") else {
            continue;
        };
        let _ = sock.set_read_timeout(Some(Duration::from_secs(2)));
        if sock.send_to(query, (*s, 53)).is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        if let Ok(n) = sock.recv(&mut buf) {
            if n >= 2 && buf[..2] == query[..2] {
                buf.truncate(n);
                return Some(buf);
            }
        }
    }
    None
}

/// Serve datagrams on `sock` until it fails.
pub fn serve_udp(sock: UdpSocket, r: &dyn Resolver) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, from): (usize, SocketAddr) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        if let Some(resp) = handle(r, &buf[..n]) {
            let _ = sock.send_to(&resp, from);
        }
    }
}

/// Serve queries framed as in DNS over TCP (a 2-byte length before each message) on a
/// stream: the microVM agent's relay speaks this over vsock.
pub fn serve_stream<S: Read + Write>(mut s: S, r: &dyn Resolver) {
    loop {
        let mut len = [0u8; 2];
        if s.read_exact(&mut len).is_err() {
            return;
        }
        let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
        if s.read_exact(&mut q).is_err() {
            return;
        }
        if let Some(resp) = handle(r, &q) {
            let mut out = (resp.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(&resp);
            if s.write_all(&out).is_err() {
                return;
            }
        }
    }
}

/// Most TCP DNS connections served at once; more are closed at once.
const TCP_MAX: usize = 32;
/// A TCP DNS connection's whole life, however it trickles.
const TCP_LIFETIME: Duration = Duration::from_secs(30);

/// Serve DNS over TCP (what resolvers fall back to for long answers): a thread per
/// connection, at most [`TCP_MAX`] at once, each closed after 10 s without traffic
/// or [`TCP_LIFETIME`] in all.
pub fn serve_tcp(l: TcpListener, r: Arc<dyn Resolver>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let live = Arc::new(AtomicUsize::new(0));
    loop {
        match l.accept() {
            Ok((c, _)) => {
                if live.load(Ordering::SeqCst) >= TCP_MAX {
                    continue;
                }
                let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = c.set_write_timeout(Some(Duration::from_secs(10)));
                let Ok(killer) = c.try_clone() else { continue };
                live.fetch_add(1, Ordering::SeqCst);
                let (r, live) = (r.clone(), live.clone());
                let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
                std::thread::spawn(move || {
                    // Ends the connection at its deadline, or as soon as it is over.
                    let _ = done_rx.recv_timeout(TCP_LIFETIME);
                    let _ = killer.shutdown(std::net::Shutdown::Both);
                });
                std::thread::spawn(move || {
                    serve_stream(c, r.as_ref());
                    drop(done_tx);
                    live.fetch_sub(1, Ordering::SeqCst);
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // Out of descriptors or memory: try again later rather than give up.
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut b = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            b.push(l.len() as u8);
            b.extend_from_slice(l.as_bytes());
        }
        b.push(0);
        b.extend_from_slice(&qtype.to_be_bytes());
        b.extend_from_slice(&1u16.to_be_bytes());
        b
    }

    struct Fixed;
    impl Resolver for Fixed {
        fn lookup(&self, name: &str) -> Option<Vec<Ipv4Addr>> {
            (name == "web").then(|| vec![Ipv4Addr::new(10, 89, 0, 2)])
        }
        fn forward(&self, _q: &[u8]) -> Option<Vec<u8>> {
            None
        }
    }

    #[test]
    fn parses_a_question() {
        let q = parse_query(&query("Web.Example", 1)).unwrap();
        assert_eq!((q.id, q.name.as_str(), q.qtype), (0x1234, "web.example", 1));
        assert!(parse_query(&[0; 5]).is_none());
        let mut resp = query("x", 1);
        resp[2] |= 0x80;
        assert!(parse_query(&resp).is_none());
    }

    #[test]
    fn answers_containers_and_refuses_the_rest() {
        let r = handle(&Fixed, &query("WEB", 1)).unwrap();
        assert_eq!(&r[0..2], &[0x12, 0x34]);
        assert_eq!(r[3] & 0x0f, 0);
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1);
        assert_eq!(&r[r.len() - 4..], &[10, 89, 0, 2]);
        // AAAA of a container: no error, no answer
        let r = handle(&Fixed, &query("web", 28)).unwrap();
        assert_eq!((r[3] & 0x0f, u16::from_be_bytes([r[6], r[7]])), (0, 0));
        // unknown single label: NXDOMAIN; unknown FQDN with no upstream: SERVFAIL
        assert_eq!(
            handle(&Fixed, &query("nope", 1)).unwrap()[3] & 0x0f,
            RCODE_NXDOMAIN
        );
        assert_eq!(
            handle(&Fixed, &query("a.b", 1)).unwrap()[3] & 0x0f,
            RCODE_SERVFAIL
        );
        assert!(handle(&Fixed, b"junk").is_none());
    }

    #[test]
    fn stream_framing() {
        let q = query("web", 1);
        let mut input = (q.len() as u16).to_be_bytes().to_vec();
        input.extend_from_slice(&q);
        struct Duplex(std::io::Cursor<Vec<u8>>, Vec<u8>);
        impl Read for Duplex {
            fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
                self.0.read(b)
            }
        }
        impl Write for Duplex {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.1.write(b)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut d = Duplex(std::io::Cursor::new(input), Vec::new());
        serve_stream(&mut d, &Fixed);
        let len = u16::from_be_bytes([d.1[0], d.1[1]]) as usize;
        assert_eq!(len + 2, d.1.len());
    }

    #[test]
    fn resolv_conf_servers() {
        let s = nameservers(
            "# x\nnameserver 10.0.0.1\nsearch a\nnameserver fe80::1\nnameserver 127.0.0.53\n",
        );
        assert_eq!(
            s,
            vec![Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 53)]
        );
    }
}
