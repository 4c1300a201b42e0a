//! The minimum of an i8042 controller: a write of 0xFE to the command port resets the
//! machine (a guest `reboot` with `reboot=k`), which ends the microVM.

use crate::vmm::bus::{BusDevice, WriteOutcome};

const CMD_RESET: u8 = 0xfe;
/// Offset of the command/status port (0x64) from the data port (0x60).
const COMMAND: u64 = 4;

#[derive(Default, Debug)]
pub struct I8042;

impl BusDevice for I8042 {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // No keyboard: empty output buffer, nothing pending.
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> WriteOutcome {
        if offset == COMMAND && data.first() == Some(&CMD_RESET) {
            WriteOutcome::Reset
        } else {
            WriteOutcome::Done
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_command() {
        let mut d = I8042;
        assert_eq!(d.write(4, &[0xfe]), WriteOutcome::Reset);
        assert_eq!(d.write(4, &[0xad]), WriteOutcome::Done);
        assert_eq!(d.write(0, &[0xfe]), WriteOutcome::Done);
    }
}
