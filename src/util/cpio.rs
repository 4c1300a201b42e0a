//! A writer for the cpio "newc" format the Linux kernel unpacks as its initramfs.

use std::io::{self, Write};

#[derive(Debug)]
pub struct CpioWriter<W: Write> {
    out: W,
    ino: u32,
    written: u64,
}

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> CpioWriter<W> {
        CpioWriter {
            out,
            ino: 1,
            written: 0,
        }
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0u8; 3][..n])
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        let name = name.trim_start_matches('/');
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            if mode & 0o170000 == 0o040000 { 2 } else { 1 },
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        self.ino += 1;
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    pub fn dir(&mut self, name: &str, perm: u32) -> io::Result<()> {
        self.entry(name, 0o040000 | perm, &[])
    }

    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(name, 0o100000 | perm, data)
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        self.entry(name, 0o120777, target.as_bytes())
    }

    /// Write the trailer and return the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.entry("TRAILER!!!", 0, &[])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout_is_aligned_and_parsable() {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("dev", 0o755).unwrap();
        w.file("/init", 0o755, b"#!/bin/sh\n").unwrap();
        w.symlink("sh", "busybox").unwrap();
        let out = w.finish().unwrap();
        assert_eq!(out.len() % 4, 0);
        // Walk the archive like the kernel does.
        let mut off = 0;
        let mut names = Vec::new();
        loop {
            assert_eq!(&out[off..off + 6], b"070701");
            let field = |i: usize| {
                usize::from_str_radix(
                    std::str::from_utf8(&out[off + 6 + i * 8..off + 14 + i * 8]).unwrap(),
                    16,
                )
                .unwrap()
            };
            let (mode, size, namesize) = (field(1), field(6), field(11));
            let name = std::str::from_utf8(&out[off + 110..off + 110 + namesize - 1])
                .unwrap()
                .to_string();
            off += 110 + namesize;
            off = (off + 3) & !3;
            let data = &out[off..off + size];
            if name == "init" {
                assert_eq!(data, b"#!/bin/sh\n");
                assert_eq!(mode, 0o100755);
            }
            if name == "sh" {
                assert_eq!(data, b"busybox");
            }
            off += size;
            off = (off + 3) & !3;
            names.push(name.clone());
            if name == "TRAILER!!!" {
                break;
            }
        }
        assert_eq!(names, vec!["dev", "init", "sh", "TRAILER!!!"]);
        assert_eq!(off, out.len());
    }
}
