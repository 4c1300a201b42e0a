//! Small shared helpers: atomic files, locks, ids, sizes, /proc.

pub mod cpio;
pub mod fs;
pub mod ids;
pub mod proc;
pub mod size;
