//! The 8250 UART on COM1: the guest kernel's console. Its output goes to a sink
//! (the container's console log), never into the workload's stdout.

use crate::vmm::bus::{BusDevice, WriteOutcome};
use std::io::Write;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

/// Raises the UART's IRQ through an irqfd.
#[derive(Debug)]
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

pub struct SerialDevice {
    uart: Serial<IrqTrigger, vm_superio::serial::NoEvents, Box<dyn Write + Send>>,
}

impl std::fmt::Debug for SerialDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialDevice").finish_non_exhaustive()
    }
}

impl SerialDevice {
    pub fn new(irq: EventFd, out: Box<dyn Write + Send>) -> SerialDevice {
        SerialDevice {
            uart: Serial::new(IrqTrigger(irq), out),
        }
    }
}

impl BusDevice for SerialDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if let Some(b) = data.first_mut() {
            // The bus hands offsets within the 8-byte port range; anything else reads
            // as register 0xff (none).
            *b = self.uart.read(u8::try_from(offset).unwrap_or(u8::MAX));
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> WriteOutcome {
        if let Some(b) = data.first() {
            let _ = self.uart.write(u8::try_from(offset).unwrap_or(u8::MAX), *b);
        }
        WriteOutcome::Done
    }
}
