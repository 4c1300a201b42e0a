//! Talking to a container's monitor: simple requests, and the interactive stream used
//! by `run`, `start -a`, `attach` and `exec` (raw terminal, detach keys, signal proxy).

use super::protocol::{self, read_frame, write_frame, Kind, Reply, Request};
use std::io::{self, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot reach the container's monitor at {path}")]
    Connect {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("talking to the monitor")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Refused(String),
}

pub fn connect(socket: &Path) -> Result<UnixStream, ClientError> {
    UnixStream::connect(socket).map_err(|source| ClientError::Connect {
        path: socket.display().to_string(),
        source,
    })
}

/// Send a request and read its one-line response.
pub fn request(socket: &Path, req: &Request) -> Result<Reply, ClientError> {
    let mut c = connect(socket)?;
    protocol::write_json_line(&mut c, req)?;
    match protocol::read_json_buffered(&mut BufReader::new(c))? {
        Reply::Refused { error } => Err(ClientError::Refused(error)),
        other => Ok(other),
    }
}

/// How an interactive stream ended.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamEnd {
    Exited(i32),
    Detached,
    /// The monitor went away without reporting an exit.
    Lost,
}

/// Options for [`stream`].
#[derive(Debug)]
pub struct StreamOpts {
    /// Forward our stdin.
    pub stdin: bool,
    /// The remote side is a terminal: put ours in raw mode, forward window size.
    pub tty: bool,
    /// Ctrl-P Ctrl-Q detaches.
    pub detach_keys: bool,
    /// Forward SIGINT/SIGTERM/... to the container (via `signal_socket`).
    pub proxy_signals: Option<std::path::PathBuf>,
}

/// Puts the terminal in raw mode until dropped.
struct RawMode {
    saved: Option<nix::sys::termios::Termios>,
}

impl RawMode {
    fn enable() -> RawMode {
        let stdin = io::stdin();
        let fd = stdin.as_fd();
        let Ok(saved) = nix::sys::termios::tcgetattr(fd) else {
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        let _ = nix::sys::termios::tcsetattr(fd, nix::sys::termios::SetArg::TCSANOW, &raw);
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(s) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(
                io::stdin().as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                s,
            );
        }
    }
}

/// Our terminal's size, if stdin is one.
pub fn terminal_size() -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize into our local.
    let rc = unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

const PROXIED: &[libc::c_int] = &[
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

type Writer = Arc<Mutex<UnixStream>>;

/// Block the proxied signals (and SIGWINCH with a terminal) in this thread, which the
/// others inherit, and handle them in one thread: a resize frame, or `kill` through
/// the monitor.
fn watch_signals(writer: &Writer, opts: &StreamOpts) {
    let mut set = nix::sys::signal::SigSet::empty();
    let mut watched: Vec<libc::c_int> = Vec::new();
    if opts.proxy_signals.is_some() && !opts.tty {
        watched.extend_from_slice(PROXIED);
    }
    if opts.tty {
        watched.push(libc::SIGWINCH);
    }
    for s in &watched {
        if let Ok(sig) = nix::sys::signal::Signal::try_from(*s) {
            set.add(sig);
        }
    }
    if watched.is_empty() {
        return;
    }
    let _ = set.thread_block();
    let w = writer.clone();
    let sock = opts.proxy_signals.clone();
    std::thread::spawn(move || {
        while let Ok(sig) = set.wait() {
            if sig == nix::sys::signal::Signal::SIGWINCH {
                if let Some((r, c)) = terminal_size() {
                    let mut g = w.lock().unwrap_or_else(|e| e.into_inner());
                    let _ = write_frame(&mut *g, Kind::Resize, &protocol::resize_payload(r, c));
                }
            } else if let Some(sock) = &sock {
                let _ = request(sock, &Request::Kill { signal: sig as i32 });
            }
        }
    });
}

/// Docker's detach keys, ctrl-p ctrl-q, across reads: a ctrl-p is held back until the
/// next byte says whether it was the start of the sequence.
#[derive(Debug, Default)]
struct DetachKeys {
    held_ctrl_p: bool,
}

impl DetachKeys {
    /// The bytes to forward from `input`, and whether the sequence was typed (what
    /// follows it is not forwarded).
    fn filter(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len() + 1);
        for &b in input {
            if self.held_ctrl_p {
                self.held_ctrl_p = false;
                if b == 0x11 {
                    return (out, true);
                }
                out.push(0x10);
            } else if b == 0x10 {
                self.held_ctrl_p = true;
                continue;
            }
            out.push(b);
        }
        (out, false)
    }
}

/// Forward our stdin as Stdin frames, then StdinEof; with detach keys, ctrl-p ctrl-q
/// ends the stream instead (marking `detached`).
fn forward_stdin(w: Writer, detached: Arc<AtomicBool>, detach_keys: bool) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut keys = DetachKeys::default();
        let mut stdin = io::stdin();
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let mut g = w.lock().unwrap_or_else(|e| e.into_inner());
                    let _ = write_frame(&mut *g, Kind::StdinEof, &[]);
                    return;
                }
                Ok(n) => n,
            };
            let (out, detach) = if detach_keys {
                keys.filter(&buf[..n])
            } else {
                (buf[..n].to_vec(), false)
            };
            if !out.is_empty() {
                let mut g = w.lock().unwrap_or_else(|e| e.into_inner());
                if write_frame(&mut *g, Kind::Stdin, &out).is_err() {
                    return;
                }
            }
            if detach {
                detached.store(true, Ordering::SeqCst);
                let g = w.lock().unwrap_or_else(|e| e.into_inner());
                let _ = g.shutdown(std::net::Shutdown::Both);
                return;
            }
        }
    });
}

/// Run the client side of an attach/exec stream on an already-requested connection.
pub fn stream(conn: UnixStream, opts: StreamOpts) -> Result<StreamEnd, ClientError> {
    let writer: Writer = Arc::new(Mutex::new(conn.try_clone()?));
    let detached = Arc::new(AtomicBool::new(false));
    let _raw = if opts.tty && nix::unistd::isatty(0).unwrap_or(false) {
        Some(RawMode::enable())
    } else {
        None
    };

    watch_signals(&writer, &opts);
    if opts.tty {
        if let Some((r, c)) = terminal_size() {
            let mut g = writer.lock().unwrap_or_else(|e| e.into_inner());
            let _ = write_frame(&mut *g, Kind::Resize, &protocol::resize_payload(r, c));
        }
    }
    if opts.stdin {
        forward_stdin(writer.clone(), detached.clone(), opts.detach_keys);
    }

    let mut reader = BufReader::new(conn);
    let stdout = io::stdout();
    let stderr = io::stderr();
    loop {
        match read_frame(&mut reader) {
            Ok(Some((Kind::Stdout, d))) => {
                let mut o = stdout.lock();
                let _ = o.write_all(&d);
                let _ = o.flush();
            }
            Ok(Some((Kind::Stderr, d))) => {
                let mut e = stderr.lock();
                let _ = e.write_all(&d);
                let _ = e.flush();
            }
            Ok(Some((Kind::Error, d))) => {
                drop(_raw);
                return Err(ClientError::Refused(
                    String::from_utf8_lossy(&d).into_owned(),
                ));
            }
            Ok(Some((Kind::Exit, d))) => return Ok(StreamEnd::Exited(protocol::parse_exit(&d))),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                return Ok(if detached.load(Ordering::SeqCst) {
                    StreamEnd::Detached
                } else {
                    StreamEnd::Lost
                })
            }
        }
    }
}

/// Receive a cp stream (Data frames) into `out`.
pub fn receive_data(conn: UnixStream, out: &mut dyn Write) -> Result<(), ClientError> {
    let mut r = BufReader::new(conn);
    let mut error = None;
    loop {
        match read_frame(&mut r)? {
            Some((Kind::Data, d)) => out.write_all(&d)?,
            Some((Kind::Error, d)) => error = Some(String::from_utf8_lossy(&d).into_owned()),
            Some((Kind::Exit, _)) | None => break,
            Some(_) => {}
        }
    }
    match error {
        Some(e) => Err(ClientError::Refused(e)),
        None => Ok(()),
    }
}

/// A `Write` that sends Data frames on a connection (cp into a container).
#[derive(Debug)]
pub struct DataWriter {
    conn: UnixStream,
}

impl DataWriter {
    pub fn new(conn: UnixStream) -> DataWriter {
        DataWriter { conn }
    }

    /// End the data and read the result.
    pub fn finish(mut self) -> Result<(), ClientError> {
        write_frame(&mut self.conn, Kind::DataEof, &[])?;
        receive_data(self.conn, &mut io::sink())
    }
}

impl Write for DataWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        for chunk in data.chunks(64 * 1024) {
            write_frame(&mut self.conn, Kind::Data, chunk)?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A `Read` over a connection's Data frames (cp out of a container); errors surface as
/// `io::Error` with the monitor's message.
#[derive(Debug)]
pub struct DataReader {
    conn: BufReader<UnixStream>,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
}

impl DataReader {
    pub fn new(conn: UnixStream) -> DataReader {
        DataReader {
            conn: BufReader::new(conn),
            buf: Vec::new(),
            pos: 0,
            done: false,
        }
    }
}

impl Read for DataReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            if self.done {
                return Ok(0);
            }
            match read_frame(&mut self.conn)? {
                Some((Kind::Data, d)) => {
                    self.buf = d;
                    self.pos = 0;
                }
                Some((Kind::Error, d)) => {
                    self.done = true;
                    return Err(io::Error::other(String::from_utf8_lossy(&d).into_owned()));
                }
                Some((Kind::DataEof, _)) | Some((Kind::Exit, _)) | None => self.done = true,
                Some(_) => {}
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn detach_keys_split_across_reads_detach_and_a_lone_ctrl_p_passes() {
        let mut k = super::DetachKeys::default();
        assert_eq!(k.filter(b"ab\x10"), (b"ab".to_vec(), false));
        assert_eq!(k.filter(b"\x11rest"), (Vec::new(), true));
        let mut k = super::DetachKeys::default();
        assert_eq!(k.filter(b"\x10x"), (b"\x10x".to_vec(), false));
        // A ctrl-p after a held one is data, not a new start.
        assert_eq!(k.filter(b"\x10\x10\x11"), (b"\x10\x10\x11".to_vec(), false));
    }
}
