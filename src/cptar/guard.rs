//! A watch on a tar stream from a container or a guest, before the tar reader sees it.
//!
//! The reader keeps some entries whole in memory — GNU long names (`L`, `K`) and pax
//! headers (`x`, `g`) — so a hostile sender could declare one of 50 GB. And a GNU
//! sparse entry (`S`) describes holes anywhere in a file of any size, which would be
//! written out as zeros. This reader follows the stream's 512-byte framing and fails
//! on either (long names over 64 KiB, any pax header or sparse entry: `pack` writes
//! none), before a byte of it is buffered.

use std::io::{self, Read};

/// Largest metadata entry accepted (a long name, a pax record set).
pub const MAX_META: u64 = 64 * 1024;

enum State {
    /// Collecting a header block.
    Header { have: usize },
    /// Inside an entry's data, padding to 512 included.
    Data { left: u64 },
}

pub struct Guard<R> {
    inner: R,
    block: [u8; 512],
    state: State,
}

impl<R: Read> Guard<R> {
    pub fn new(inner: R) -> Guard<R> {
        Guard {
            inner,
            block: [0; 512],
            state: State::Header { have: 0 },
        }
    }

    fn scan(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Header { have } => {
                    let take = (512 - *have).min(bytes.len());
                    self.block[*have..*have + take].copy_from_slice(&bytes[..take]);
                    *have += take;
                    bytes = &bytes[take..];
                    if *have == 512 {
                        self.state = self.header()?;
                    }
                }
                State::Data { left } => {
                    // At most bytes.len(): fits in usize.
                    let take = usize::try_from(*left).map_or(bytes.len(), |l| l.min(bytes.len()));
                    *left -= take as u64;
                    bytes = &bytes[take..];
                    if *left == 0 {
                        self.state = State::Header { have: 0 };
                    }
                }
            }
        }
        Ok(())
    }

    /// A full header block: check it, and frame its data by its own size field. pax
    /// headers, which could frame the next entry differently (and which `pack` never
    /// writes), are refused, so this framing and the tar reader's always agree.
    fn header(&mut self) -> io::Result<State> {
        let b = &self.block;
        if b.iter().all(|x| *x == 0) {
            return Ok(State::Header { have: 0 });
        }
        let kind = b[156];
        let size = parse_size(&b[124..136])?;
        let bad = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
        match kind {
            b'x' | b'g' | b'X' => return Err(bad("refusing a pax header".into())),
            b'S' => return Err(bad("refusing a GNU sparse entry".into())),
            b'L' | b'K' if size > MAX_META => {
                return Err(bad(format!(
                    "refusing an archive header entry of {size} bytes (at most {MAX_META})"
                )))
            }
            _ => {}
        }
        let padded = size.div_ceil(512).saturating_mul(512);
        Ok(if padded == 0 {
            State::Header { have: 0 }
        } else {
            State::Data { left: padded }
        })
    }
}

/// A header's size field: octal text, or base-256 when the top bit is set.
fn parse_size(f: &[u8]) -> io::Result<u64> {
    if f[0] & 0x80 != 0 {
        let mut v: u64 = 0;
        for (i, b) in f.iter().enumerate() {
            let b = if i == 0 { b & 0x7f } else { *b };
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(b)))
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "size overflows"))?;
        }
        return Ok(v);
    }
    let s: String = f
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as char)
        .collect();
    let s = s.trim();
    if s.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(s, 8)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad size in an archive header"))
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.scan(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(t: &[u8]) -> io::Result<Vec<String>> {
        let mut ar = tar::Archive::new(Guard::new(t));
        let mut names = Vec::new();
        for e in ar.entries()? {
            let mut e = e?;
            names.push(e.path()?.display().to_string());
            io::copy(&mut e, &mut io::sink())?;
        }
        Ok(names)
    }

    #[test]
    fn ordinary_archives_pass_long_names_included() {
        let mut b = tar::Builder::new(Vec::new());
        let long = format!("{}/f", "d".repeat(300));
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(1000);
        b.append_data(&mut h, "big", &vec![7u8; 1000][..]).unwrap();
        let t = b.into_inner().unwrap();
        assert_eq!(read_all(&t).unwrap(), vec![long, "big".to_string()]);
    }

    #[test]
    fn huge_metadata_and_sparse_entries_are_refused() {
        for kind in [b'L', b'x', b'g', b'S'] {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::new(kind));
            h.set_size(50 << 30);
            h.set_cksum();
            let mut t = h.as_bytes().to_vec();
            t.extend_from_slice(&[0u8; 4096]);
            let e = read_all(&t).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{}", kind as char);
        }
    }
}
