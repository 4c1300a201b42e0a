//! The one frame codec both binary protocols use — the monitor's control socket and the
//! host <-> guest-agent vsock stream: `kind: u8, stream: u32 BE, len: u32 BE, payload`.
//! Each protocol names its own kinds (with [`frame_kinds!`]); the header, the size
//! bound and the clean-versus-torn end are the same code.

use std::io::{self, Read, Write};

/// Header bytes: kind, stream, length.
pub const HEADER: usize = 9;
/// Bounds a payload so a corrupt or hostile stream cannot make us allocate without limit.
pub const MAX_FRAME: usize = 1 << 20;

/// A protocol's frame kinds.
pub trait FrameKind: Copy + Sized {
    fn to_u8(self) -> u8;
    fn from_u8(b: u8) -> Option<Self>;
}

/// Declare a protocol's frame kinds: an enum with explicit discriminants and its
/// [`FrameKind`] conversions.
#[macro_export]
macro_rules! frame_kinds {
    ($(#[$m:meta])* $vis:vis enum $name:ident { $($(#[$vm:meta])* $v:ident = $n:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u8)]
        $vis enum $name { $($(#[$vm])* $v = $n,)* }

        impl $crate::util::frame::FrameKind for $name {
            fn to_u8(self) -> u8 {
                self as u8
            }
            fn from_u8(b: u8) -> Option<Self> {
                match b {
                    $($n => Some($name::$v),)*
                    _ => None,
                }
            }
        }
    };
}

/// Write one frame (header and payload in one write, so frames from threads sharing a
/// locked writer never interleave).
pub fn write<K: FrameKind>(
    w: &mut dyn Write,
    kind: K,
    stream: u32,
    payload: &[u8],
) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l as usize <= MAX_FRAME)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut buf = Vec::with_capacity(HEADER + payload.len());
    buf.push(kind.to_u8());
    buf.extend_from_slice(&stream.to_be_bytes());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(payload);
    w.write_all(&buf)?;
    w.flush()
}

/// Read one frame: (kind, stream, payload); `Ok(None)` at a clean end before a header,
/// an error for an unknown kind, a payload over [`MAX_FRAME`] or a torn frame.
pub fn read<K: FrameKind>(r: &mut dyn Read) -> io::Result<Option<(K, u32, Vec<u8>)>> {
    let mut hdr = [0u8; HEADER];
    if !read_header(r, &mut hdr)? {
        return Ok(None);
    }
    let kind = K::from_u8(hdr[0])
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unknown frame kind"))?;
    let stream = u32::from_be_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]);
    let len = u32::from_be_bytes([hdr[5], hdr[6], hdr[7], hdr[8]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some((kind, stream, payload)))
}

/// Fill `buf`; `Ok(false)` if the stream ended cleanly before the first byte, an
/// `UnexpectedEof` error if it ended in the middle.
pub fn read_header(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        let n = r.read(&mut buf[got..])?;
        if n == 0 {
            return if got == 0 {
                Ok(false)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        got += n;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::frame_kinds! {
        enum K { A = 0, B = 7, }
    }

    #[test]
    fn clean_and_torn_ends() {
        let mut b = [0u8; 3];
        assert!(!read_header(&mut &[][..], &mut b).unwrap());
        assert!(read_header(&mut &[1u8, 2][..], &mut b).is_err());
        assert!(read_header(&mut &[1u8, 2, 3, 4][..], &mut b).unwrap());
        assert_eq!(b, [1, 2, 3]);
    }

    #[test]
    fn frames_roundtrip_with_their_stream() {
        let mut buf = Vec::new();
        write(&mut buf, K::B, 42, b"hello").unwrap();
        write(&mut buf, K::A, 0, b"").unwrap();
        let mut r = &buf[..];
        assert_eq!(
            read::<K>(&mut r).unwrap(),
            Some((K::B, 42, b"hello".to_vec()))
        );
        assert_eq!(read::<K>(&mut r).unwrap(), Some((K::A, 0, Vec::new())));
        assert_eq!(read::<K>(&mut r).unwrap(), None);
    }

    #[test]
    fn unknown_kinds_huge_and_torn_frames_are_errors() {
        let mut r = &[9u8, 0, 0, 0, 0, 0, 0, 0, 0][..];
        assert!(read::<K>(&mut r).is_err(), "unknown kind");
        let mut hdr = vec![0u8, 0, 0, 0, 1];
        hdr.extend_from_slice(&(MAX_FRAME as u32 + 1).to_be_bytes());
        assert!(read::<K>(&mut &hdr[..]).is_err(), "over the bound");
        let mut torn = Vec::new();
        write(&mut torn, K::A, 1, b"abcdef").unwrap();
        torn.truncate(HEADER + 3);
        assert!(read::<K>(&mut &torn[..]).is_err(), "torn payload");
        let big = vec![0u8; MAX_FRAME + 1];
        assert!(
            write(&mut Vec::new(), K::A, 0, &big).is_err(),
            "never written"
        );
    }
}
