//! Container logs: JSON lines `{"log": text, "stream": "stdout"|"stderr", "time": rfc3339}`,
//! Docker's json-file format, kept after the container exits.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LogRecord {
    pub log: String,
    pub stream: String,
    pub time: DateTime<Utc>,
}

/// Appends records; one per line of output (a trailing partial line is its own record).
pub struct LogWriter {
    file: File,
}

impl LogWriter {
    pub fn open(path: &Path) -> io::Result<LogWriter> {
        Ok(LogWriter {
            file: OpenOptions::new().create(true).append(true).open(path)?,
        })
    }

    pub fn write(&mut self, stream: &str, data: &[u8]) -> io::Result<()> {
        let now = Utc::now();
        let text = String::from_utf8_lossy(data);
        let mut out = Vec::new();
        for piece in text.split_inclusive('\n') {
            let rec = LogRecord {
                log: piece.to_string(),
                stream: stream.to_string(),
                time: now,
            };
            serde_json::to_writer(&mut out, &rec).map_err(io::Error::other)?;
            out.push(b'\n');
        }
        self.file.write_all(&out)
    }
}

/// Read every record of a log file (a torn last line from a crash is skipped).
pub fn read_all(path: &Path) -> io::Result<Vec<LogRecord>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e),
    };
    let mut v = Vec::new();
    for line in BufReader::new(f).lines() {
        if let Ok(r) = serde_json::from_str::<LogRecord>(&line?) {
            v.push(r);
        }
    }
    Ok(v)
}

/// Index of the first record to show for `--tail n` (counting complete lines).
pub fn tail_start(records: &[LogRecord], n: usize) -> usize {
    if n == 0 {
        return records.len();
    }
    let mut lines = 0;
    for i in (0..records.len()).rev() {
        if records[i].log.ends_with('\n') || i == records.len() - 1 {
            lines += 1;
            if lines > n {
                return i + 1;
            }
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_tail() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut w = LogWriter::open(&p).unwrap();
        w.write("stdout", b"one\ntwo\nthr").unwrap();
        w.write("stdout", b"ee\n").unwrap();
        w.write("stderr", b"err\n").unwrap();
        let recs = read_all(&p).unwrap();
        let text: String = recs.iter().map(|r| r.log.as_str()).collect();
        assert_eq!(text, "one\ntwo\nthree\nerr\n");
        assert_eq!(recs.last().unwrap().stream, "stderr");
        let start = tail_start(&recs, 2);
        let tail: String = recs[start..].iter().map(|r| r.log.as_str()).collect();
        assert_eq!(tail, "three\nerr\n");
        assert_eq!(tail_start(&recs, 0), recs.len());
        assert_eq!(tail_start(&recs, 100), 0);
    }

    #[test]
    fn torn_line_is_skipped() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        std::fs::write(&p, "{\"log\":\"a\\n\",\"stream\":\"stdout\",\"time\":\"2026-01-01T00:00:00Z\"}\n{\"log\":\"b").unwrap();
        assert_eq!(read_all(&p).unwrap().len(), 1);
    }
}
