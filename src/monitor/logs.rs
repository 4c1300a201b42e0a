//! Container logs: what the workload wrote to stdout and stderr, kept after it exits,
//! rotated at a size limit, read from the end in bounded memory.
//!
//! A log file starts with [`MAGIC`] and holds records, each one piece of output as the
//! monitor read it (at most [`MAX_PAYLOAD`] bytes):
//!
//! ```text
//! stream u8 (1 stdout, 2 stderr) | 0 0 0 | len u32 LE | time ns i64 LE | payload | len u32 LE
//! ```
//!
//! 20 bytes per record however many lines it holds (Docker's json-file spends ~70 per
//! line). The trailing length lets `logs --tail` walk back from the end without reading
//! the rest. Rotation keeps `container.log` and up to `max_file - 1` older files
//! (`container.log.1` the newest of them). Files from before this format (JSON lines)
//! are still read.

use chrono::{DateTime, Utc};
use serde::Deserialize;

pub use crate::state::LogConfig;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub const MAGIC: &[u8; 8] = b"TBLOG1\n\0";
const HEAD: usize = 16;
const TAIL: usize = 4;
/// Largest payload of one record (Docker splits long lines at 16 KiB too).
pub const MAX_PAYLOAD: usize = 16 * 1024;

/// Which stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout = 1,
    Stderr = 2,
}

impl LogConfig {
    /// From `--log-driver` and `--log-opt KEY=VALUE` values.
    pub fn parse(driver: Option<&str>, opts: &[String]) -> Result<LogConfig, String> {
        let mut c = LogConfig::default();
        match driver.unwrap_or("json-file") {
            d @ ("json-file" | "local" | "none") => c.driver = d.into(),
            other => {
                return Err(format!(
                    "unsupported logging driver {other:?}: use json-file, local or none"
                ))
            }
        }
        for o in opts {
            let (k, v) = o
                .split_once('=')
                .ok_or_else(|| format!("invalid --log-opt {o:?}: use KEY=VALUE"))?;
            match k {
                "max-size" => {
                    c.max_size = if v == "-1" {
                        u64::MAX
                    } else {
                        crate::util::size::parse_size(v)
                            .map_err(|e| format!("invalid --log-opt max-size: {e}"))?
                    };
                    if c.max_size < 4096 {
                        return Err("invalid --log-opt max-size: at least 4k".into());
                    }
                }
                "max-file" => {
                    c.max_file = v
                        .parse()
                        .ok()
                        .filter(|n: &u32| (1..=100).contains(n))
                        .ok_or_else(|| {
                            format!("invalid --log-opt max-file {v:?}: a number from 1 to 100")
                        })?;
                }
                // Accepted for compatibility; they change nothing here.
                "compress" | "mode" | "max-buffer-size" | "tag" | "labels" | "env" => {}
                other => return Err(format!("unknown log option {other:?}")),
            }
        }
        if c.driver == "none" && !opts.is_empty() {
            return Err("--log-opt cannot be used with --log-driver none".into());
        }
        Ok(c)
    }

    pub fn keeps_logs(&self) -> bool {
        self.driver != "none"
    }
}

fn encode(stream: Stream, time_ns: i64, data: &[u8], out: &mut Vec<u8>) {
    out.push(stream as u8);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&time_ns.to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
}

/// Appends records, rotating at the size limit.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    cfg: LogConfig,
}

fn create_log(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .append(true)
        .read(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    f.set_len(0)?;
    (&f).write_all(MAGIC)?;
    Ok(f)
}

impl LogWriter {
    pub fn open(path: &Path, cfg: &LogConfig) -> io::Result<LogWriter> {
        let mut w = LogWriter {
            path: path.to_path_buf(),
            file: match std::fs::metadata(path) {
                Ok(m) if m.len() > 0 => OpenOptions::new().append(true).read(true).open(path)?,
                _ => create_log(path)?,
            },
            size: 0,
            cfg: cfg.clone(),
        };
        let mut head = [0u8; 8];
        if read_at(&w.file, 0, &mut head).is_err() || &head != MAGIC {
            // A JSON-lines log from an older twinbox (or garbage): kept as the previous
            // file, a new one starts.
            w.rotate()?;
        } else {
            w.size = repair_end(&w.file)?;
        }
        Ok(w)
    }

    /// One piece of output (split into records of at most MAX_PAYLOAD bytes).
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> io::Result<()> {
        let now = Utc::now().timestamp_nanos_opt().unwrap_or(0);
        for piece in data.chunks(MAX_PAYLOAD) {
            let len = (HEAD + piece.len() + TAIL) as u64;
            if self.size > MAGIC.len() as u64 && self.size.saturating_add(len) > self.cfg.max_size {
                self.rotate()?;
            }
            let mut rec = Vec::with_capacity(len as usize);
            encode(stream, now, piece, &mut rec);
            self.file.write_all(&rec)?;
            self.size += len;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let keep = self.cfg.max_file.max(1);
        if keep > 1 {
            for k in (1..keep - 1).rev() {
                let _ = std::fs::rename(numbered(&self.path, k), numbered(&self.path, k + 1));
            }
            std::fs::rename(&self.path, numbered(&self.path, 1))?;
        } else {
            // A new file (a new inode), so a follower sees the rotation.
            std::fs::remove_file(&self.path)?;
        }
        self.file = create_log(&self.path)?;
        self.size = MAGIC.len() as u64;
        Ok(())
    }
}

fn numbered(path: &Path, k: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{k}"));
    PathBuf::from(s)
}

/// Check the last record is whole; a monitor killed mid-write leaves a torn one, which
/// is cut off (found by a forward scan: only after a crash). Returns the file's size.
fn repair_end(f: &File) -> io::Result<u64> {
    let len = f.metadata()?.len();
    if last_record_start(f, len)?.is_some() || len == MAGIC.len() as u64 {
        return Ok(len);
    }
    let mut good = MAGIC.len() as u64;
    let mut r = BufReader::new(f);
    r.seek(SeekFrom::Start(good))?;
    while let Some((_, _, data)) = read_record(&mut r)? {
        good += (HEAD + data.len() + TAIL) as u64;
    }
    f.set_len(good)?;
    Ok(good)
}

/// Where the record that ends at `end` starts, if it is whole.
fn last_record_start(f: &File, end: u64) -> io::Result<Option<u64>> {
    if end < (MAGIC.len() + HEAD + TAIL) as u64 {
        return Ok(None);
    }
    let mut t = [0u8; 4];
    read_at(f, end - 4, &mut t)?;
    let len = u32::from_le_bytes(t) as u64;
    if len as usize > MAX_PAYLOAD || end < MAGIC.len() as u64 + HEAD as u64 + len + 4 {
        return Ok(None);
    }
    let start = end - 4 - len - HEAD as u64;
    let mut h = [0u8; HEAD];
    read_at(f, start, &mut h)?;
    let ok = matches!(h[0], 1 | 2) && u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as u64 == len;
    Ok(ok.then_some(start))
}

fn read_at(f: &File, off: u64, buf: &mut [u8]) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(f, buf, off)
}

/// The next whole record, or None at the end (or at a torn record).
fn read_record(r: &mut impl Read) -> io::Result<Option<(Stream, i64, Vec<u8>)>> {
    let mut h = [0u8; HEAD];
    if !read_full(r, &mut h)? {
        return Ok(None);
    }
    let stream = match h[0] {
        1 => Stream::Stdout,
        2 => Stream::Stderr,
        _ => return Ok(None),
    };
    let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
    if len > MAX_PAYLOAD {
        return Ok(None);
    }
    let time = i64::from_le_bytes(h[8..16].try_into().unwrap_or([0; 8]));
    let mut data = vec![0u8; len + TAIL];
    if !read_full(r, &mut data)? {
        return Ok(None);
    }
    let trailer = u32::from_le_bytes(data[len..].try_into().unwrap_or([0; 4])) as usize;
    if trailer != len {
        return Ok(None);
    }
    data.truncate(len);
    Ok(Some((stream, time, data)))
}

/// Fill `buf`; false at a clean or torn end.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Every whole record `r` has left, to `each` (the first one less its first `skip`
/// bytes); returns the bytes they took.
fn each_record(
    r: &mut impl Read,
    skip: &mut usize,
    each: &mut dyn FnMut(Chunk),
) -> io::Result<u64> {
    let mut took = 0;
    while let Some((stream, t, data)) = read_record(r)? {
        took += (HEAD + data.len() + TAIL) as u64;
        let from = std::mem::take(skip).min(data.len());
        each(Chunk {
            stream,
            time: DateTime::from_timestamp_nanos(t),
            data: &data[from..],
        });
    }
    Ok(took)
}

/// One piece of output as `logs` shows it.
#[derive(Debug)]
pub struct Chunk<'a> {
    pub stream: Stream,
    pub time: DateTime<Utc>,
    pub data: &'a [u8],
}

/// A record of the older JSON-lines format.
#[derive(Deserialize)]
struct LegacyRecord {
    log: String,
    stream: String,
    time: DateTime<Utc>,
}

/// The log files of a container, oldest first.
fn files(path: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = (1..=100)
        .map(|k| numbered(path, k))
        .take_while(|p| p.exists())
        .collect();
    v.reverse();
    if path.exists() {
        v.push(path.to_path_buf());
    }
    v
}

fn is_legacy(f: &File) -> bool {
    let mut b = [0u8; 1];
    read_at(f, 0, &mut b).is_ok() && b[0] == b'{'
}

/// Where reading starts: a file, a byte offset in it, bytes to skip in that record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Start {
    file: usize,
    offset: u64,
    skip: usize,
}

/// Find where the last `n` lines begin, walking back from the end one record at a
/// time.
fn tail_start(files: &[PathBuf], n: usize) -> io::Result<Start> {
    let end = Start {
        file: files.len(),
        offset: 0,
        skip: 0,
    };
    if n == 0 {
        return Ok(end);
    }
    // Newlines still to pass; the very last byte of the log ending a line is not one.
    let mut need = n;
    let mut first = true;
    for (i, p) in files.iter().enumerate().rev() {
        let f = File::open(p)?;
        if is_legacy(&f) {
            // Older logs: scanned forward (they are what they were).
            let lines = BufReader::new(&f).lines().count();
            // Each line ends with a newline; the log's very last one does not count.
            let avail = if first {
                lines.saturating_sub(1)
            } else {
                lines
            };
            if avail >= need {
                return Ok(Start {
                    file: i,
                    offset: (avail - need + 1) as u64,
                    skip: usize::MAX,
                });
            }
            need -= avail;
            first &= lines == 0;
            continue;
        }
        let mut pos = f.metadata()?.len();
        while let Some(start) = last_record_start(&f, pos)? {
            let mut data = vec![0u8; (pos - start) as usize - HEAD - TAIL];
            read_at(&f, start + HEAD as u64, &mut data)?;
            let mut idx = data.len();
            if first {
                first = false;
                if data.last() == Some(&b'\n') {
                    idx -= 1;
                }
            }
            while let Some(nl) = data[..idx].iter().rposition(|b| *b == b'\n') {
                need -= 1;
                if need == 0 {
                    return Ok(Start {
                        file: i,
                        offset: start,
                        skip: nl + 1,
                    });
                }
                idx = nl;
            }
            pos = start;
        }
    }
    Ok(Start {
        file: 0,
        offset: 0,
        skip: 0,
    })
}

/// Where `follow` goes on from: a file's inode and the end of its last whole record.
pub type Position = Option<(u64, u64)>;

/// Read a container's log from `start`, calling `each` per piece, up to where each file
/// ended when it was opened (a busy writer does not keep a plain `logs` going).
/// Returns where the last file's whole records ended.
fn read_from(files: &[PathBuf], start: Start, each: &mut dyn FnMut(Chunk)) -> io::Result<Position> {
    let mut pos = None;
    for (i, p) in files
        .iter()
        .enumerate()
        .skip(start.file.min(files.len().saturating_sub(1)))
    {
        let f = File::open(p)?;
        let meta = f.metadata()?;
        // `start.file == files.len()`: nothing to print, only the position to find.
        let quiet = start.file >= files.len();
        let here = i == start.file;
        if is_legacy(&f) {
            let skip_lines = if here && start.skip == usize::MAX {
                start.offset as usize
            } else {
                0
            };
            for line in BufReader::new(&f).lines().skip(skip_lines) {
                if let Ok(r) = serde_json::from_str::<LegacyRecord>(&line?) {
                    let stream = if r.stream == "stderr" {
                        Stream::Stderr
                    } else {
                        Stream::Stdout
                    };
                    if !quiet {
                        each(Chunk {
                            stream,
                            time: r.time,
                            data: r.log.as_bytes(),
                        });
                    }
                }
            }
            pos = Some((meta.ino(), meta.len()));
            continue;
        }
        let (offset, mut skip) = if here {
            (start.offset.max(MAGIC.len() as u64), start.skip)
        } else {
            (MAGIC.len() as u64, 0)
        };
        let mut r =
            BufReader::with_capacity(64 * 1024, (&f).take(meta.len().saturating_sub(offset)));
        std::io::Seek::seek(r.get_mut().get_mut(), SeekFrom::Start(offset))?;
        let mut drop_all = |_: Chunk| {};
        let sink: &mut dyn FnMut(Chunk) = if quiet { &mut drop_all } else { each };
        let at = offset + each_record(&mut r, &mut skip, sink)?;
        pos = Some((meta.ino(), at));
    }
    Ok(pos)
}

/// Everything in the log, or its last `tail` lines. Returns where `read_since` goes
/// on from.
pub fn read(path: &Path, tail: Option<usize>, each: &mut dyn FnMut(Chunk)) -> io::Result<Position> {
    let files = files(path);
    let start = match tail {
        Some(n) => tail_start(&files, n)?,
        None => Start {
            file: 0,
            offset: 0,
            skip: 0,
        },
    };
    read_from(&files, start, each)
}

/// Records added to the log since `pos` (from `read` or an earlier call), through a
/// rotation too; returns the new position.
pub fn read_since(path: &Path, pos: Position, each: &mut dyn FnMut(Chunk)) -> io::Result<Position> {
    let Some((ino, len)) = std::fs::metadata(path).ok().map(|m| (m.ino(), m.len())) else {
        return Ok(pos);
    };
    let mut from = match pos {
        Some((pino, plen)) if pino == ino && plen <= len => plen,
        Some((pino, plen)) => {
            // Rotated: the rest of the file we were reading is now a numbered one.
            if let Some(old) = files(path)
                .into_iter()
                .find(|p| std::fs::metadata(p).is_ok_and(|m| m.ino() == pino))
            {
                let f = File::open(&old)?;
                let mut r = BufReader::new(&f);
                r.seek(SeekFrom::Start(plen))?;
                each_record(&mut r, &mut 0, each)?;
            }
            0
        }
        None => 0,
    };
    from = from.max(MAGIC.len() as u64);
    let f = File::open(path)?;
    if is_legacy(&f) || len <= from {
        return Ok(Some((ino, len.max(from))));
    }
    let mut r = BufReader::new(&f);
    r.seek(SeekFrom::Start(from))?;
    let at = from + each_record(&mut r, &mut 0, each)?;
    Ok(Some((ino, at)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(path: &Path, tail: Option<usize>) -> (String, String) {
        let (mut out, mut err) = (String::new(), String::new());
        let _ = read(path, tail, &mut |c| {
            let s = String::from_utf8_lossy(c.data);
            match c.stream {
                Stream::Stdout => out.push_str(&s),
                Stream::Stderr => err.push_str(&s),
            }
        })
        .unwrap();
        (out, err)
    }

    #[test]
    fn write_read_tail_and_streams() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut w = LogWriter::open(&p, &LogConfig::default()).unwrap();
        w.write(Stream::Stdout, b"one\ntwo\nthr").unwrap();
        w.write(Stream::Stdout, b"ee\n").unwrap();
        w.write(Stream::Stderr, b"err\n").unwrap();
        assert_eq!(
            collect(&p, None),
            ("one\ntwo\nthree\n".into(), "err\n".into())
        );
        assert_eq!(collect(&p, Some(2)), ("three\n".into(), "err\n".into()));
        assert_eq!(
            collect(&p, Some(3)),
            ("two\nthree\n".into(), "err\n".into())
        );
        assert_eq!(collect(&p, Some(0)), (String::new(), String::new()));
        assert_eq!(collect(&p, Some(100)).0, "one\ntwo\nthree\n");
        // A last line without a newline counts as a line.
        w.write(Stream::Stdout, b"partial").unwrap();
        assert_eq!(collect(&p, Some(1)).0, "partial");
    }

    #[test]
    fn rotation_keeps_max_file_files_and_reads_across_them() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let cfg = LogConfig {
            max_size: 4096,
            max_file: 3,
            ..Default::default()
        };
        let mut w = LogWriter::open(&p, &cfg).unwrap();
        for i in 0..1000 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        let files = files(&p);
        assert_eq!(files.len(), 3);
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() <= 4096);
        }
        let (out, _) = collect(&p, None);
        assert!(out.ends_with("line 999\n"));
        assert!(!out.contains("line 0\n"));
        let (tail, _) = collect(&p, Some(400));
        assert_eq!(tail.lines().count(), 400.min(out.lines().count()));
        assert!(tail.ends_with("line 999\n"));
        // Following across a rotation misses nothing.
        let pos = read(&p, Some(0), &mut |_| {}).unwrap();
        for i in 1000..1200 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        let mut seen = String::new();
        read_since(&p, pos, &mut |c| {
            seen.push_str(&String::from_utf8_lossy(c.data))
        })
        .unwrap();
        assert!(
            seen.starts_with("line 1000\n") && seen.ends_with("line 1199\n"),
            "{seen}"
        );
    }

    #[test]
    fn following_starts_at_a_whole_record_even_mid_write() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut w = LogWriter::open(&p, &LogConfig::default()).unwrap();
        w.write(Stream::Stdout, b"one\n").unwrap();
        // The writer is half-way through a record (its payload is the container's).
        let mut rec = Vec::new();
        encode(
            Stream::Stdout,
            0,
            b"\x01\0\0\0\x04\0\0\0fake two\n",
            &mut rec,
        );
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&rec[..10]).unwrap();
        let mut seen = String::new();
        let pos = read(&p, None, &mut |c| {
            seen.push_str(&String::from_utf8_lossy(c.data))
        })
        .unwrap();
        assert_eq!(seen, "one\n");
        f.write_all(&rec[10..]).unwrap();
        let mut more = Vec::new();
        read_since(&p, pos, &mut |c| more.extend_from_slice(c.data)).unwrap();
        assert_eq!(more, b"\x01\0\0\0\x04\0\0\0fake two\n");
    }

    #[test]
    fn a_torn_record_is_cut_and_writing_goes_on() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut w = LogWriter::open(&p, &LogConfig::default()).unwrap();
        w.write(Stream::Stdout, b"kept\n").unwrap();
        drop(w);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&[1, 0, 0, 0, 50, 0, 0, 0, 1, 2]).unwrap();
        let mut w = LogWriter::open(&p, &LogConfig::default()).unwrap();
        w.write(Stream::Stdout, b"after\n").unwrap();
        assert_eq!(collect(&p, None).0, "kept\nafter\n");
        assert_eq!(collect(&p, Some(1)).0, "after\n");
    }

    #[test]
    fn older_json_logs_are_read() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        std::fs::write(&p, "{\"log\":\"a\\n\",\"stream\":\"stdout\",\"time\":\"2026-01-01T00:00:00Z\"}\n{\"log\":\"b\\n\",\"stream\":\"stderr\",\"time\":\"2026-01-01T00:00:00Z\"}\n").unwrap();
        assert_eq!(collect(&p, None), ("a\n".into(), "b\n".into()));
        // A writer moves it aside and goes on in the new format.
        let mut w = LogWriter::open(&p, &LogConfig::default()).unwrap();
        w.write(Stream::Stdout, b"c\n").unwrap();
        assert_eq!(collect(&p, None), ("a\nc\n".into(), "b\n".into()));
        assert_eq!(collect(&p, Some(1)), ("c\n".into(), String::new()));
    }

    #[test]
    fn options_parse_like_docker() {
        let c = LogConfig::parse(None, &["max-size=10m".into(), "max-file=3".into()]).unwrap();
        assert_eq!((c.max_size, c.max_file), (10 * 1024 * 1024, 3));
        assert!(LogConfig::parse(Some("syslog"), &[]).is_err());
        assert!(LogConfig::parse(None, &["max-file=0".into()]).is_err());
        assert!(LogConfig::parse(None, &["max-size=lots".into()]).is_err());
        assert!(LogConfig::parse(None, &["colour=red".into()]).is_err());
        assert!(!LogConfig::parse(Some("none"), &[]).unwrap().keeps_logs());
    }
}
