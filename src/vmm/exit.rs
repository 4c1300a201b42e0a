//! vCPU exit handling: one pure function from an exit to what the VMM does next.

use super::bus::{Bus, WriteOutcome};
use kvm_ioctls::VcpuExit;

/// What the vCPU loop does after an exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run the vCPU again.
    Continue,
    /// The guest powered off or rebooted (triple fault, i8042 reset, system event): the
    /// microVM ends.
    Shutdown,
    /// KVM could not emulate an instruction (on a PVM host this is the limit of the
    /// platform, see docs/lab.md §1).
    InternalError,
    /// VM entry failed.
    FailEntry(u64),
    /// An exit twinbox does not handle.
    Unexpected(String),
}

/// Handle one exit against the I/O and MMIO buses.
pub fn handle_exit(pio: &Bus, mmio: &Bus, exit: VcpuExit<'_>) -> Action {
    match exit {
        VcpuExit::IoIn(port, data) => {
            if !pio.read(u64::from(port), data) {
                // Nothing there: a floating bus reads all ones.
                data.fill(0xff);
            }
            Action::Continue
        }
        VcpuExit::IoOut(port, data) => match pio.write(u64::from(port), data) {
            Some(WriteOutcome::Reset) => Action::Shutdown,
            _ => Action::Continue,
        },
        VcpuExit::MmioRead(addr, data) => {
            if !mmio.read(addr, data) {
                data.fill(0);
            }
            Action::Continue
        }
        VcpuExit::MmioWrite(addr, data) => match mmio.write(addr, data) {
            Some(WriteOutcome::Reset) => Action::Shutdown,
            _ => Action::Continue,
        },
        VcpuExit::Shutdown | VcpuExit::SystemEvent(..) => Action::Shutdown,
        // With the in-kernel irqchip KVM handles HLT itself; a userspace HLT exit means
        // the vCPU stopped for good.
        VcpuExit::Hlt => Action::Shutdown,
        VcpuExit::InternalError => Action::InternalError,
        VcpuExit::FailEntry(reason, _) => Action::FailEntry(reason),
        VcpuExit::IrqWindowOpen | VcpuExit::Intr => Action::Continue,
        other => Action::Unexpected(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::bus::BusDevice;
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Rec(Vec<(u64, Vec<u8>)>);
    impl BusDevice for Rec {
        fn read(&mut self, _offset: u64, data: &mut [u8]) {
            data.fill(0x42);
        }
        fn write(&mut self, offset: u64, data: &[u8]) -> WriteOutcome {
            self.0.push((offset, data.to_vec()));
            WriteOutcome::Done
        }
    }

    fn buses() -> (Bus, Bus, Arc<Mutex<Rec>>) {
        let mut pio = Bus::new();
        let mut mmio = Bus::new();
        let serial = Arc::new(Mutex::new(Rec::default()));
        pio.insert(0x3f8, 8, serial.clone()).unwrap();
        pio.insert(
            0x60,
            5,
            Arc::new(Mutex::new(crate::vmm::devices::i8042::I8042)),
        )
        .unwrap();
        mmio.insert(0xd000_0000, 0x1000, Arc::new(Mutex::new(Rec::default())))
            .unwrap();
        (pio, mmio, serial)
    }

    #[test]
    fn port_io_is_routed() {
        let (pio, mmio, serial) = buses();
        assert_eq!(
            handle_exit(&pio, &mmio, VcpuExit::IoOut(0x3f8, b"A")),
            Action::Continue
        );
        assert_eq!(serial.lock().unwrap().0, vec![(0, b"A".to_vec())]);
        let mut d = [0u8; 1];
        assert_eq!(
            handle_exit(&pio, &mmio, VcpuExit::IoIn(0x3fd, &mut d)),
            Action::Continue
        );
        assert_eq!(d[0], 0x42);
        let mut d = [0u8; 2];
        handle_exit(&pio, &mmio, VcpuExit::IoIn(0x2f8, &mut d));
        assert_eq!(d, [0xff, 0xff], "unmapped ports float high");
    }

    #[test]
    fn resets_and_shutdowns_end_the_vm() {
        let (pio, mmio, _) = buses();
        assert_eq!(
            handle_exit(&pio, &mmio, VcpuExit::IoOut(0x64, &[0xfe])),
            Action::Shutdown
        );
        assert_eq!(
            handle_exit(&pio, &mmio, VcpuExit::Shutdown),
            Action::Shutdown
        );
        assert_eq!(
            handle_exit(&pio, &mmio, VcpuExit::SystemEvent(1, &[])),
            Action::Shutdown
        );
        assert_eq!(
            handle_exit(&pio, &mmio, VcpuExit::InternalError),
            Action::InternalError
        );
        assert_eq!(
            handle_exit(&pio, &mmio, VcpuExit::FailEntry(7, 0)),
            Action::FailEntry(7)
        );
    }

    #[test]
    fn mmio_is_routed_and_unmapped_reads_zero() {
        let (pio, mmio, _) = buses();
        let mut d = [0xffu8; 4];
        handle_exit(&pio, &mmio, VcpuExit::MmioRead(0xd000_0004, &mut d));
        assert_eq!(d, [0x42; 4]);
        let mut d = [0xffu8; 4];
        handle_exit(&pio, &mmio, VcpuExit::MmioRead(0xe000_0000, &mut d));
        assert_eq!(d, [0; 4]);
        assert!(matches!(
            handle_exit(&pio, &mmio, VcpuExit::Debug(Default::default())),
            Action::Unexpected(_)
        ));
    }
}
