//! The host <-> agent protocol, over one vsock stream the agent opens at boot.
//!
//! Frames: `kind: u8, stream: u32 BE, len: u32 BE, payload`. Stream 0 is the workload;
//! each exec and copy gets its own stream id, chosen by the host. Control messages are
//! JSON in `Json` frames; stdio and copy data travel as raw bytes.

use crate::sandbox::TopRow;
use crate::spec::{ProcessSpec, SandboxSpec};
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};

/// Bumped on any incompatible change; the host refuses an agent that differs.
pub const VERSION: u32 = 3;
/// The vsock port the host listens on for the agent.
pub const AGENT_PORT: u32 = 1024;
/// The vsock port the agent relays DNS queries to (framed as DNS over TCP).
pub const DNS_PORT: u32 = 53;
/// The virtio-fs tag of the container's root: the host's overlay of the image's layers
/// and the container's writable layer, as a process container gets it.
pub const ROOT_SHARE: &str = "twinbox-root";
pub use crate::util::frame::MAX_FRAME;

crate::frame_kinds! {
    pub enum Kind {
        Json = 0,
        Stdin = 1,
        Stdout = 2,
        Stderr = 3,
        StdinEof = 4,
        Data = 5,
        DataEof = 6,
    }
}

/// Host -> agent control messages.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum HostMsg {
    /// Set up the container root and start the workload (stream 0).
    Start {
        spec: Box<SandboxSpec>,
        /// /etc/hostname, /etc/hosts, /etc/resolv.conf contents.
        etc: Vec<(String, String)>,
        /// Capabilities, no_new_privs and the compiled seccomp filter (for the workload
        /// and every exec). Required: an agent that would not apply it is refused by
        /// its version.
        confinement: crate::init::confine::Confinement,
    },
    Exec {
        process: ProcessSpec,
    },
    Signal {
        signal: i32,
    },
    Resize {
        rows: u16,
        cols: u16,
    },
    CopyOut {
        path: String,
    },
    CopyIn {
        path: String,
    },
    Top,
    /// The host has everything: the agent may power off.
    Bye,
}

/// Agent -> host control messages.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum AgentMsg {
    Ready {
        version: u32,
        kernel: String,
    },
    Started {
        pid: i32,
    },
    Exited {
        code: i32,
        oom_killed: bool,
    },
    /// The process could not start; `code` is 126/127/125 like Docker's.
    Failed {
        message: String,
        code: i32,
    },
    Top {
        rows: Vec<TopRow>,
    },
    CopyDone,
    CopyFailed {
        message: String,
    },
}

pub fn write_frame(w: &mut dyn Write, kind: Kind, stream: u32, payload: &[u8]) -> io::Result<()> {
    crate::util::frame::write(w, kind, stream, payload)
}

pub fn write_json<T: Serialize>(w: &mut dyn Write, stream: u32, msg: &T) -> io::Result<()> {
    let p = serde_json::to_vec(msg).map_err(io::Error::other)?;
    write_frame(w, Kind::Json, stream, &p)
}

/// One frame: (kind, stream, payload); `Ok(None)` at a clean EOF.
pub fn read_frame(r: &mut dyn Read) -> io::Result<Option<(Kind, u32, Vec<u8>)>> {
    crate::util::frame::read(r)
}

pub fn parse_json<T: for<'de> Deserialize<'de>>(p: &[u8]) -> io::Result<T> {
    serde_json::from_slice(p).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Fuzz entry point (`fuzz/fuzz_targets/agent_frames.rs`, `tests/fuzz_corpus.rs`): the
/// host reads any bytes an agent sends as frames and messages, as the monitor's
/// dispatcher does, and either gets them or an error — never a panic, never a payload
/// beyond `MAX_FRAME`.
#[doc(hidden)]
pub fn fuzz_frames(data: &[u8]) {
    let mut r = data;
    for _ in 0..4096 {
        match read_frame(&mut r) {
            Ok(Some((kind, _stream, payload))) => {
                assert!(payload.len() <= MAX_FRAME);
                if kind == Kind::Json {
                    let _ = parse_json::<AgentMsg>(&payload);
                }
            }
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_messages_roundtrip() {
        let mut buf = Vec::new();
        write_json(&mut buf, 0, &HostMsg::Signal { signal: 15 }).unwrap();
        write_frame(&mut buf, Kind::Stdout, 3, b"out").unwrap();
        write_json(
            &mut buf,
            0,
            &AgentMsg::Exited {
                code: 7,
                oom_killed: false,
            },
        )
        .unwrap();
        let mut r = &buf[..];
        let (k, s, p) = read_frame(&mut r).unwrap().unwrap();
        assert_eq!((k, s), (Kind::Json, 0));
        assert_eq!(
            parse_json::<HostMsg>(&p).unwrap(),
            HostMsg::Signal { signal: 15 }
        );
        let (k, s, p) = read_frame(&mut r).unwrap().unwrap();
        assert_eq!((k, s, p.as_slice()), (Kind::Stdout, 3, &b"out"[..]));
        let (_, _, p) = read_frame(&mut r).unwrap().unwrap();
        assert_eq!(
            parse_json::<AgentMsg>(&p).unwrap(),
            AgentMsg::Exited {
                code: 7,
                oom_killed: false
            }
        );
        assert!(read_frame(&mut r).unwrap().is_none());
    }

    #[test]
    fn bad_frames_are_errors() {
        let mut r = &[9u8, 0, 0, 0, 0, 0, 0, 0, 0][..];
        assert!(read_frame(&mut r).is_err());
        let mut r = &[0u8, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff][..];
        assert!(read_frame(&mut r).is_err());
        let mut r = &[0u8, 0, 0][..];
        assert!(read_frame(&mut r).is_err());
    }

    #[test]
    fn start_carries_the_same_spec() {
        let spec = SandboxSpec {
            hostname: "h".into(),
            ..Default::default()
        };
        let m = HostMsg::Start {
            spec: Box::new(spec.clone()),
            etc: vec![("/etc/hostname".into(), "h\n".into())],
            confinement: crate::init::confine::Confinement {
                seccomp: Some(vec![6, 0, 0, 0, 0, 0, 0xff, 0x7f]),
                ..Default::default()
            },
        };
        let v = serde_json::to_vec(&m).unwrap();
        match parse_json::<HostMsg>(&v).unwrap() {
            HostMsg::Start {
                spec: s,
                confinement,
                ..
            } => {
                assert_eq!(*s, spec);
                assert_eq!(confinement.seccomp.unwrap().len(), 8);
            }
            _ => panic!(),
        }
    }
}
