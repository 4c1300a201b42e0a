//! The kernel command line: console, reboot method, and one `virtio_mmio.device=` per device.

use crate::vmm::layout::{CMDLINE_MAX, MMIO_SLOT};
use crate::vmm::VmmError;
use linux_loader::cmdline::Cmdline;
use vm_memory::GuestAddress;

/// A virtio-mmio device as the command line announces it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MmioSlot {
    pub base: u64,
    pub irq: u32,
}

/// The base command line twinbox boots with.
///
/// `reboot=t`: a guest reboot triple-faults, which KVM reports as a shutdown exit (no
/// ACPI, no i8042 needed). `panic=-1`: a panic reboots at once, so the VMM exits.
/// `i8042.*`: skip legacy probing. `8250.nr_uarts=1`: no phantom UARTs to probe.
pub const BASE: &str = "console=ttyS0 reboot=t panic=-1 pci=off nomodule 8250.nr_uarts=1 \
i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd tsc=reliable ipv6.disable=1";

pub fn build(extra: &str, slots: &[MmioSlot], quiet: bool) -> Result<Cmdline, VmmError> {
    let err = |e: linux_loader::cmdline::Error| VmmError::Cmdline(e.to_string());
    let mut c = Cmdline::new(CMDLINE_MAX).map_err(err)?;
    c.insert_str(BASE).map_err(err)?;
    if quiet {
        c.insert_str("quiet").map_err(err)?;
    }
    for s in slots {
        c.add_virtio_mmio_device(MMIO_SLOT, GuestAddress(s.base), s.irq, None)
            .map_err(err)?;
    }
    if !extra.trim().is_empty() {
        c.insert_str(extra.trim()).map_err(err)?;
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_announced() {
        let c = build(
            "twinbox.port=1024",
            &[
                MmioSlot {
                    base: 0xd000_0000,
                    irq: 5,
                },
                MmioSlot {
                    base: 0xd000_1000,
                    irq: 6,
                },
            ],
            true,
        )
        .unwrap();
        let s = c.as_cstring().unwrap().into_string().unwrap();
        assert!(s.starts_with("console=ttyS0 reboot=t"));
        assert!(s.contains("virtio_mmio.device=4K@0xd0000000:5"), "{s}");
        assert!(s.contains("virtio_mmio.device=4K@0xd0001000:6"), "{s}");
        assert!(s.ends_with("twinbox.port=1024"), "{s}");
        assert!(s.contains(" quiet"));
    }

    #[test]
    fn too_long_is_an_error() {
        assert!(build(&"x".repeat(4000), &[], false).is_err());
    }
}
