//! The guest's network: eth0 as the spec says (address, up, default route), and the
//! DNS relay that carries queries for 127.0.0.11 to the host's responder over vsock.

use crate::init::SetupError;
use crate::network::netlink::{self, Netlink};
use crate::spec::{SandboxSpec, EMBEDDED_DNS};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};

/// The host's vsock CID.
const HOST_CID: u32 = 2;

fn step(what: &'static str) -> impl FnOnce(io::Error) -> SetupError {
    move |e| SetupError::new(what, e)
}

/// Configure each interface of the spec; the virtio-net devices appear as eth0, eth1…
/// in probe order, matching the spec's order.
pub fn configure(spec: &SandboxSpec) -> Result<(), SetupError> {
    let mut nl = Netlink::open().map_err(step("netlink socket"))?;
    for (n, i) in spec.interfaces.iter().enumerate() {
        let idx = netlink::index_of(&i.name).ok_or_else(|| {
            SetupError::new(
                "find the network device",
                io::Error::from_raw_os_error(libc::ENODEV),
            )
        })?;
        nl.add_address(idx, i.address, i.prefix)
            .map_err(step("address on the network device"))?;
        nl.set_up(idx, true)
            .map_err(step("bring up the network device"))?;
        if n == 0 {
            nl.add_default_route(i.gateway)
                .map_err(step("default route"))?;
        }
    }
    if spec.embedded_dns {
        start_dns_relay().map_err(step("DNS relay"))?;
    }
    Ok(())
}

/// Relay DNS over TCP on 127.0.0.11:53: each connection spliced to one vsock stream
/// to the host, which speaks the same 2-byte framing.
fn start_dns_tcp_relay() -> io::Result<()> {
    let l = TcpListener::bind((EMBEDDED_DNS, 53))?;
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { continue };
            std::thread::spawn(move || {
                let _ = splice_to_host(c);
            });
        }
    });
    Ok(())
}

fn splice_to_host(c: TcpStream) -> io::Result<()> {
    // An idle client ends its connection (and the host's thread for it).
    c.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let host = super::vsock::connect(HOST_CID, super::protocol::DNS_PORT)?;
    let (mut c_in, mut h_out) = (c.try_clone()?, host.try_clone()?);
    let up = std::thread::spawn(move || {
        let _ = io::copy(&mut c_in, &mut h_out);
        // The client is done asking: let the host side see the end too.
        // SAFETY: shutdown(2) on a descriptor h_out owns.
        unsafe { libc::shutdown(std::os::fd::AsRawFd::as_raw_fd(&h_out), libc::SHUT_WR) };
    });
    let (mut h_in, mut c_out) = (host, c);
    let _ = io::copy(&mut h_in, &mut c_out);
    let _ = c_out.shutdown(std::net::Shutdown::Both);
    let _ = up.join();
    Ok(())
}

/// Relay UDP queries on 127.0.0.11:53 to the host (vsock port DNS_PORT), each framed
/// with a 2-byte length; answers go back to whoever asked, matched by query id.
fn start_dns_relay() -> io::Result<()> {
    start_dns_tcp_relay()?;
    let udp = UdpSocket::bind((EMBEDDED_DNS, 53))?;
    let stream = super::vsock::connect(HOST_CID, super::protocol::DNS_PORT)?;
    let mut to_host = stream.try_clone()?;
    let mut from_host = stream;
    let waiting: Arc<Mutex<HashMap<u16, SocketAddr>>> = Arc::default();
    let answers = udp.try_clone()?;
    let w = waiting.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            if n < 12 {
                continue;
            }
            let id = u16::from_be_bytes([buf[0], buf[1]]);
            w.lock().unwrap_or_else(|e| e.into_inner()).insert(id, from);
            let Ok(len) = u16::try_from(n) else {
                continue;
            };
            let mut frame = len.to_be_bytes().to_vec();
            frame.extend_from_slice(&buf[..n]);
            if to_host.write_all(&frame).is_err() {
                return;
            }
        }
    });
    std::thread::spawn(move || loop {
        let mut len = [0u8; 2];
        if from_host.read_exact(&mut len).is_err() {
            return;
        }
        let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
        if from_host.read_exact(&mut msg).is_err() || msg.len() < 2 {
            return;
        }
        let id = u16::from_be_bytes([msg[0], msg[1]]);
        let to = waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        if let Some(to) = to {
            let _ = answers.send_to(&msg, to);
        }
    });
    Ok(())
}
