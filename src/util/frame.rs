//! Reading fixed-size frame headers from a stream, telling a clean end from a torn one
//! (shared by the monitor's and the guest agent's protocols).

use std::io::{self, Read};

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
    #[test]
    fn clean_and_torn_ends() {
        let mut b = [0u8; 3];
        assert!(!super::read_header(&mut &[][..], &mut b).unwrap());
        assert!(super::read_header(&mut &[1u8, 2][..], &mut b).is_err());
        assert!(super::read_header(&mut &[1u8, 2, 3, 4][..], &mut b).unwrap());
        assert_eq!(b, [1, 2, 3]);
    }
}
