//! Devices: legacy ones on the I/O bus, virtio ones on the MMIO bus.

pub mod boot_timer;
pub mod i8042;
pub mod serial;
pub mod virtio;
