//! The host's end of the agent connection: one vsock stream carrying every process's
//! stdio, copies and control messages, each on its own stream id.

use crate::guest::protocol::{self, AgentMsg, HostMsg, Kind};
use crate::sandbox::{SandboxError, WorkloadIo};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::AtomicU32;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex};

/// Where frames for one stream go.
pub(super) enum Route {
    Process {
        stdout: Option<File>,
        stderr: Option<File>,
        control: Sender<AgentMsg>,
    },
    Copy {
        data: Option<Sender<Vec<u8>>>,
        control: Sender<AgentMsg>,
    },
    Control(Sender<AgentMsg>),
}

pub(super) struct Conn {
    pub writer: Mutex<UnixStream>,
    routes: Mutex<HashMap<u32, Route>>,
    /// The next stream id (0 is the workload's).
    pub next: AtomicU32,
    /// The agent's connection ended.
    pub closed: Mutex<bool>,
    closed_cv: Condvar,
}

impl Conn {
    pub fn new(stream: UnixStream) -> Conn {
        Conn {
            writer: Mutex::new(stream),
            routes: Mutex::new(HashMap::new()),
            next: AtomicU32::new(1),
            closed: Mutex::new(false),
            closed_cv: Condvar::new(),
        }
    }

    pub fn send(&self, stream: u32, msg: &HostMsg) -> io::Result<()> {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        protocol::write_json(&mut *w, stream, msg)
    }

    pub fn send_data(&self, kind: Kind, stream: u32, data: &[u8]) -> io::Result<()> {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        protocol::write_frame(&mut *w, kind, stream, data)
    }

    pub fn route(&self, stream: u32, r: Route) {
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(stream, r);
    }

    /// Read frames from the agent and deliver them, until the connection ends.
    pub fn dispatch(&self, mut reader: UnixStream) {
        while let Ok(Some((kind, stream, payload))) = protocol::read_frame(&mut reader) {
            let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
            let Some(route) = routes.get_mut(&stream) else {
                continue;
            };
            match (kind, route) {
                (
                    Kind::Stdout,
                    Route::Process {
                        stdout: Some(f), ..
                    },
                )
                | (
                    Kind::Stderr,
                    Route::Process {
                        stderr: Some(f), ..
                    },
                ) => {
                    let _ = f.write_all(&payload);
                }
                (Kind::Data, Route::Copy { data: Some(tx), .. }) => {
                    let _ = tx.send(payload);
                }
                (Kind::DataEof, Route::Copy { data, .. }) => {
                    *data = None;
                }
                (Kind::Json, route) => {
                    let Ok(msg) = protocol::parse_json::<AgentMsg>(&payload) else {
                        continue;
                    };
                    let done = matches!(msg, AgentMsg::Exited { .. });
                    match route {
                        Route::Process {
                            control,
                            stdout,
                            stderr,
                        } => {
                            if done {
                                // Output precedes the exit on the stream: close the pipes.
                                *stdout = None;
                                *stderr = None;
                            }
                            let _ = control.send(msg);
                        }
                        Route::Copy { control, .. } | Route::Control(control) => {
                            let _ = control.send(msg);
                        }
                    }
                    if done {
                        routes.remove(&stream);
                    }
                }
                _ => {}
            }
        }
        // The agent is gone: close every stream so nobody waits forever.
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        *self.closed.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.closed_cv.notify_all();
    }
}

/// Pipes for a process's stdio on the host: (what the monitor reads/writes, what the
/// dispatcher writes into, stdin reader to forward).
pub(super) fn stdio_pipes(
    tty: bool,
    stdin: bool,
) -> Result<(WorkloadIo, File, Option<File>, Option<File>), SandboxError> {
    let (out_r, out_w) = crate::init::pipe()?;
    let (err_r, err_w) = if tty {
        (None, None)
    } else {
        let (r, w) = crate::init::pipe()?;
        (Some(r), Some(w))
    };
    let (in_r, in_w) = if stdin || tty {
        let (r, w) = crate::init::pipe()?;
        (Some(r), Some(w))
    } else {
        (None, None)
    };
    Ok((
        WorkloadIo {
            stdin: in_w,
            stdout: out_r,
            stderr: err_r,
        },
        out_w,
        err_w,
        in_r,
    ))
}

/// Forward a stdin pipe to the agent as Stdin frames, then StdinEof.
pub(super) fn forward_stdin(conn: Arc<Conn>, stream: u32, mut r: File) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = conn.send_data(Kind::StdinEof, stream, &[]);
                    return;
                }
                Ok(n) => {
                    if conn.send_data(Kind::Stdin, stream, &buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    });
}

pub(super) fn start_failure(msg: AgentMsg, arg0: &str) -> SandboxError {
    match msg {
        AgentMsg::Failed { message, code } => match code {
            127 => SandboxError::NotFound(arg0.to_string()),
            126 => SandboxError::NotExecutable(arg0.to_string()),
            _ => SandboxError::Other(message),
        },
        other => SandboxError::Other(format!("unexpected answer from the agent: {other:?}")),
    }
}
