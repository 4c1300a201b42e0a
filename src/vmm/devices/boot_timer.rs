//! The boot timer: the guest agent writes a magic byte to a port as soon as it runs, and
//! the VMM notes the time. "VM created" to "agent running" is the guest boot time.

use crate::vmm::bus::{BusDevice, WriteOutcome};
use crate::vmm::layout::BOOT_MAGIC;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Clone, Default, Debug)]
pub struct BootTimer {
    pub at: Arc<Mutex<Option<Instant>>>,
}

impl BusDevice for BootTimer {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) -> WriteOutcome {
        if data.first() == Some(&BOOT_MAGIC) {
            let mut g = self.at.lock().unwrap_or_else(|e| e.into_inner());
            if g.is_none() {
                *g = Some(Instant::now());
            }
        }
        WriteOutcome::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_the_first_magic_write_only() {
        let mut t = BootTimer::default();
        t.write(0, &[1]);
        assert!(t.at.lock().unwrap().is_none());
        t.write(0, &[BOOT_MAGIC]);
        let first = t.at.lock().unwrap().unwrap();
        t.write(0, &[BOOT_MAGIC]);
        assert_eq!(t.at.lock().unwrap().unwrap(), first);
    }
}
