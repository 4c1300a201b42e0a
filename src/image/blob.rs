//! Blobs streamed to and from the store: hashed and counted as they pass, written to a
//! temporary file in the store's own filesystem and renamed into place only once
//! their digest is known (and, for callers that expect one, checked). Nothing a pull,
//! load, import or commit handles is held whole in memory.

use super::store::{io_err, ImageError, Store};
use sha2::{Digest as _, Sha256};
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// A writer (or reader) that hashes (sha256) and counts what passes through it.
#[derive(Debug)]
pub struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W> Hashing<W> {
    pub fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// The digest (`sha256:<hex>`) of what passed so far.
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }

    /// The inner writer, and the digest (`sha256:<hex>`) and size of what passed.
    pub fn finish(self) -> (W, String, u64) {
        let digest = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        (self.inner, digest, self.size)
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Digest and size of everything `r` yields.
pub fn digest_of(r: &mut dyn Read) -> io::Result<(String, u64)> {
    let mut h = Hashing::new(io::sink());
    io::copy(r, &mut h)?;
    let (_, d, n) = h.finish();
    Ok((d, n))
}

/// A blob being written into the store.
#[derive(Debug)]
pub struct BlobWriter {
    /// None once finished.
    out: Option<Hashing<BufWriter<fs::File>>>,
    path: PathBuf,
}

impl BlobWriter {
    /// Flush to disk and name the content. The blob is not in the store yet.
    pub fn finish(mut self) -> Result<TempBlob, ImageError> {
        let path = std::mem::take(&mut self.path);
        let out = self.out.take().expect("a blob writer is finished once");
        let (buf, digest, size) = out.finish();
        // From here the temp blob owns the file (and removes it if this fails).
        let tmp = TempBlob { digest, size, path };
        let file = buf
            .into_inner()
            .map_err(|e| io_err(&tmp.path)(e.into_error()))?;
        file.sync_data().map_err(io_err(&tmp.path))?;
        Ok(tmp)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.out {
            Some(o) => o.write(buf),
            None => Err(io::Error::other("blob writer already finished")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            Some(o) => o.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // Unfinished (an error on the way): nothing to keep. finish() takes the path.
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A blob written and hashed but not yet in the store; removed if dropped unstored.
#[derive(Debug)]
pub struct TempBlob {
    pub digest: String,
    pub size: u64,
    path: PathBuf,
}

impl TempBlob {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn open(&self) -> Result<fs::File, ImageError> {
        fs::File::open(&self.path).map_err(io_err(&self.path))
    }

    /// The whole content: for small documents (manifests, configs, index.json).
    pub fn read_all(&self, limit: u64) -> Result<Vec<u8>, ImageError> {
        if self.size > limit {
            return Err(ImageError::BadArchive(format!(
                "{} is {} bytes, more than a document of its kind may be ({limit})",
                self.digest, self.size
            )));
        }
        fs::read(&self.path).map_err(io_err(&self.path))
    }

    /// Fail unless the content is what the producer announced.
    pub fn expect(&self, digest: &str, size: Option<u64>) -> Result<(), ImageError> {
        if self.digest != digest {
            return Err(ImageError::DigestMismatch {
                digest: digest.to_string(),
                actual: self.digest.clone(),
            });
        }
        match size {
            Some(s) if s != self.size => Err(ImageError::BadArchive(format!(
                "blob {digest} is {} bytes, its descriptor says {s}",
                self.size
            ))),
            _ => Ok(()),
        }
    }

    /// Move into the store (a hard link, so the same temp blob can be stored twice
    /// and still be read). Returns true if the store did not have it before.
    pub fn persist(&self, store: &Store) -> Result<bool, ImageError> {
        let dest = store.blob_path(&self.digest);
        if dest.exists() {
            return Ok(false);
        }
        match fs::hard_link(&self.path, &dest) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_err(&dest)(e)),
        }
    }
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

impl Store {
    /// Start writing a blob (a temp file in the store's tmp dir).
    pub fn blob_writer(&self) -> Result<BlobWriter, ImageError> {
        let dir = self.tmp_dir();
        let (file, path) = tempfile::Builder::new()
            // The writer's pid in the name: gc sweeps what dead writers left.
            .prefix(&format!("blob-{}-", std::process::id()))
            .tempfile_in(&dir)
            .map_err(io_err(&dir))?
            .keep()
            .map_err(|e| io_err(&dir)(e.error))?;
        Ok(BlobWriter {
            out: Some(Hashing::new(BufWriter::with_capacity(1 << 20, file))),
            path,
        })
    }

    /// Stream `r` (`what`, for errors) into a temp blob (not yet stored).
    pub fn temp_blob(&self, r: &mut dyn Read, what: &str) -> Result<TempBlob, ImageError> {
        let mut w = self.blob_writer()?;
        io::copy(r, &mut w).map_err(|source| ImageError::Read {
            what: what.to_string(),
            source,
        })?;
        w.finish()
    }

    /// Open a stored blob for reading (not verified: see [`Store::verify_blob`]).
    pub fn open_blob(&self, digest: &str) -> Result<fs::File, ImageError> {
        let p = self.blob_path(digest);
        fs::File::open(&p).map_err(io_err(&p))
    }

    /// Whether the store holds `digest` with the right content; its size if so.
    pub fn verify_blob(&self, digest: &str) -> Result<u64, ImageError> {
        let p = self.blob_path(digest);
        let mut f = fs::File::open(&p).map_err(io_err(&p))?;
        let (actual, size) = digest_of(&mut f).map_err(io_err(&p))?;
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                digest: digest.to_string(),
                actual,
            });
        }
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_streams_in_and_is_named_by_its_content() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let mut w = s.blob_writer().unwrap();
        w.write_all(b"hel").unwrap();
        w.write_all(b"lo").unwrap();
        let t = w.finish().unwrap();
        assert_eq!(
            t.digest,
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(t.size, 5);
        assert!(t.expect(&t.digest.clone(), Some(5)).is_ok());
        assert!(t.expect(&t.digest.clone(), Some(6)).is_err());
        assert!(matches!(
            t.expect("sha256:00", None),
            Err(ImageError::DigestMismatch { .. })
        ));
        assert!(
            !s.blob_path(&t.digest).exists(),
            "not stored before persist"
        );
        assert!(t.persist(&s).unwrap());
        assert!(!t.persist(&s).unwrap(), "a second persist finds it there");
        let tmp = t.path().to_path_buf();
        drop(t);
        assert!(!tmp.exists(), "the temp file goes");
        assert_eq!(s.verify_blob(&sha256_hello()).unwrap(), 5);
        assert_eq!(s.read_blob(&sha256_hello()).unwrap(), b"hello");
        fs::write(s.blob_path(&sha256_hello()), b"hellO").unwrap();
        assert!(matches!(
            s.verify_blob(&sha256_hello()),
            Err(ImageError::DigestMismatch { .. })
        ));
    }

    fn sha256_hello() -> String {
        "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".into()
    }

    #[test]
    fn an_unfinished_or_unstored_blob_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let mut w = s.blob_writer().unwrap();
        w.write_all(b"partial").unwrap();
        drop(w);
        let t = s.temp_blob(&mut &b"never stored"[..], "test").unwrap();
        drop(t);
        assert_eq!(fs::read_dir(s.tmp_dir()).unwrap().count(), 0);
        assert_eq!(
            fs::read_dir(s.dir().join("blobs/sha256")).unwrap().count(),
            0
        );
    }
}
