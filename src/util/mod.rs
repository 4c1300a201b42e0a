//! Small shared helpers: atomic files, locks, ids, sizes, /proc.

pub mod clock;
pub mod cpio;
pub mod cpuset;
pub mod frame;

/// The error and its sources on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

pub mod fs;
pub mod ids;
pub mod proc;
pub mod size;
