//! Small shared helpers: atomic files, locks, ids, sizes, /proc.

pub mod fs;
pub mod ids;
pub mod proc;
pub mod size;
