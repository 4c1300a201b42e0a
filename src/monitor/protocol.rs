//! The monitor's control socket protocol.
//!
//! A client connects, sends one [`Request`] as a JSON line, and gets either one
//! [`Reply`] JSON line (simple requests) or a stream of frames (attach, exec, cp) in
//! the codec of [`crate::util::frame`].

use crate::phase::Phase;
use crate::sandbox::{SandboxStats, TopRow};
use crate::spec::ProcessSpec;
use serde::{Deserialize, Serialize};
use std::io::{self, BufRead, Read, Write};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Stream the workload's output (and forward stdin).
    Attach {
        stdin: bool,
        stdout: bool,
        stderr: bool,
        /// Close the workload's stdin when this client's stdin ends (`run -i`).
        close_stdin: bool,
    },
    /// Block until the workload exits; the response carries the exit code.
    Wait,
    Kill {
        signal: i32,
    },
    /// Graceful stop: `signal`, then a hard kill after `timeout` seconds.
    Stop {
        signal: i32,
        timeout: u64,
    },
    Pause,
    Resume,
    Resize {
        rows: u16,
        cols: u16,
    },
    Exec {
        process: ProcessSpec,
        detach: bool,
    },
    CopyOut {
        path: String,
    },
    CopyIn {
        path: String,
    },
    Top,
    Stats,
}

/// The one-line answer to a simple request.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Done,
    /// `wait`/`stop`: how the workload ended (None: the monitor did not see it).
    Exited {
        exit_code: Option<i32>,
    },
    Top {
        rows: Vec<TopRow>,
    },
    Stats {
        stats: SandboxStats,
    },
    /// The request failed; why.
    Refused {
        error: String,
    },
}

/// What the monitor tells the process that started it, one JSON line each on the
/// ready pipe: `listening` (foreground starts only), a `phase` per start-up step, then
/// `started` or `failed`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "report", rename_all = "snake_case")]
pub enum StartReport {
    /// The control socket is up: a foreground `run` attaches now, before output flows.
    Listening,
    /// One start-up step and its cost.
    Phase {
        phase: Phase,
        ms: f64,
    },
    Started,
    /// The start failed: why, and the exit code `run` should use (125/126/127).
    Failed {
        error: String,
        code: i32,
    },
}

crate::frame_kinds! {
    /// Frame kinds.
    pub enum Kind {
        Stdin = 0,
        Stdout = 1,
        Stderr = 2,
        /// Payload: exit code, i32 big-endian. Ends the stream.
        Exit = 3,
        /// Payload: UTF-8 message, then an exit code frame may follow. Ends a cp stream.
        Error = 4,
        StdinEof = 5,
        /// Payload: rows u16, cols u16, big-endian.
        Resize = 6,
        /// Payload: raw bytes (cp tar stream).
        Data = 7,
        /// End of a Data stream.
        DataEof = 8,
    }
}

pub use crate::util::frame::MAX_FRAME;

/// Write one frame (the control socket carries one stream per connection: stream 0).
pub fn write_frame(w: &mut dyn Write, kind: Kind, payload: &[u8]) -> io::Result<()> {
    crate::util::frame::write(w, kind, 0, payload)
}

/// Read one frame; `Ok(None)` on a clean EOF before a header.
pub fn read_frame(r: &mut dyn Read) -> io::Result<Option<(Kind, Vec<u8>)>> {
    Ok(crate::util::frame::read(r)?.map(|(k, _, p)| (k, p)))
}

pub fn exit_payload(code: i32) -> [u8; 4] {
    code.to_be_bytes()
}

pub fn parse_exit(p: &[u8]) -> i32 {
    if p.len() >= 4 {
        i32::from_be_bytes([p[0], p[1], p[2], p[3]])
    } else {
        125
    }
}

pub fn resize_payload(rows: u16, cols: u16) -> [u8; 4] {
    let r = rows.to_be_bytes();
    let c = cols.to_be_bytes();
    [r[0], r[1], c[0], c[1]]
}

pub fn parse_resize(p: &[u8]) -> Option<(u16, u16)> {
    (p.len() >= 4).then(|| {
        (
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
        )
    })
}

pub fn write_json_line<T: Serialize>(w: &mut dyn Write, v: &T) -> io::Result<()> {
    let mut s = serde_json::to_vec(v).map_err(io::Error::other)?;
    s.push(b'\n');
    w.write_all(&s)?;
    w.flush()
}

/// Read one JSON line without buffering past it (the stream may continue with frames).
pub fn read_json_line<T: for<'de> Deserialize<'de>>(r: &mut dyn Read) -> io::Result<T> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        let n = r.read(&mut b)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
        if line.len() > MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request too long",
            ));
        }
    }
    serde_json::from_slice(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Read a JSON line from a buffered reader (client side, where buffering is fine).
pub fn read_json_buffered<T: for<'de> Deserialize<'de>>(r: &mut dyn BufRead) -> io::Result<T> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    serde_json::from_str(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_roundtrip() {
        let mut buf = Vec::new();
        write_frame(&mut buf, Kind::Stdout, b"hello").unwrap();
        write_frame(&mut buf, Kind::Exit, &exit_payload(-3)).unwrap();
        let mut r = &buf[..];
        let (k, p) = read_frame(&mut r).unwrap().unwrap();
        assert_eq!((k, p.as_slice()), (Kind::Stdout, &b"hello"[..]));
        let (k, p) = read_frame(&mut r).unwrap().unwrap();
        assert_eq!(k, Kind::Exit);
        assert_eq!(parse_exit(&p), -3);
        assert!(read_frame(&mut r).unwrap().is_none());
    }

    #[test]
    fn truncated_and_bogus_frames_are_errors() {
        let mut r = &[1u8, 0, 0][..];
        assert!(read_frame(&mut r).is_err());
        let mut r = &[99u8, 0, 0, 0, 0][..];
        assert!(read_frame(&mut r).is_err());
        let mut r = &[1u8, 0xff, 0xff, 0xff, 0xff][..];
        assert!(read_frame(&mut r).is_err());
    }

    #[test]
    fn requests_are_json_lines_and_frames_may_follow() {
        let mut buf = Vec::new();
        write_json_line(&mut buf, &Request::Kill { signal: 15 }).unwrap();
        write_frame(&mut buf, Kind::Stdin, b"x").unwrap();
        let mut r = &buf[..];
        let req: Request = read_json_line(&mut r).unwrap();
        assert_eq!(req, Request::Kill { signal: 15 });
        let (k, _) = read_frame(&mut r).unwrap().unwrap();
        assert_eq!(k, Kind::Stdin);
        assert_eq!(parse_resize(&resize_payload(24, 80)), Some((24, 80)));
    }
}
