//! The I/O and MMIO buses: address ranges mapped to devices. The map is fixed once the VM
//! is built, so lookups take no lock; each device has its own lock.

use std::sync::{Arc, Mutex};

/// What a device write asks of the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Done,
    /// The guest asked for a reset / power-off (i8042 0xFE).
    Reset,
}

pub trait BusDevice: Send {
    /// Read `data.len()` bytes at `offset` from the device's base.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    fn write(&mut self, offset: u64, data: &[u8]) -> WriteOutcome;
}

pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

struct Range {
    base: u64,
    len: u64,
    dev: SharedDevice,
}

#[derive(Default)]
pub struct Bus {
    ranges: Vec<Range>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus").finish_non_exhaustive()
    }
}

impl Bus {
    pub fn new() -> Bus {
        Bus::default()
    }

    /// Map `dev` at [base, base+len). Overlaps are refused.
    pub fn insert(&mut self, base: u64, len: u64, dev: SharedDevice) -> Result<(), String> {
        if len == 0 {
            return Err("empty bus range".into());
        }
        if self
            .ranges
            .iter()
            .any(|r| base < r.base + r.len && r.base < base + len)
        {
            return Err(format!(
                "bus range {base:#x}+{len:#x} overlaps another device"
            ));
        }
        self.ranges.push(Range { base, len, dev });
        self.ranges.sort_by_key(|r| r.base);
        Ok(())
    }

    fn find(&self, addr: u64) -> Option<&Range> {
        let i = self.ranges.partition_point(|r| r.base <= addr);
        let r = self.ranges.get(i.checked_sub(1)?)?;
        (addr < r.base + r.len).then_some(r)
    }

    /// Dispatch a read; false if nothing is mapped there.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr) {
            Some(r) => {
                r.dev
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .read(addr - r.base, data);
                true
            }
            None => false,
        }
    }

    /// Dispatch a write; None if nothing is mapped there.
    pub fn write(&self, addr: u64, data: &[u8]) -> Option<WriteOutcome> {
        self.find(addr).map(|r| {
            r.dev
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .write(addr - r.base, data)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(Vec<(u64, Vec<u8>)>);
    impl BusDevice for Echo {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) -> WriteOutcome {
            self.0.push((offset, data.to_vec()));
            WriteOutcome::Done
        }
    }

    #[test]
    fn routes_by_range_and_refuses_overlaps() {
        let mut bus = Bus::new();
        let a = Arc::new(Mutex::new(Echo(vec![])));
        bus.insert(0x100, 8, a.clone()).unwrap();
        bus.insert(0x200, 8, Arc::new(Mutex::new(Echo(vec![]))))
            .unwrap();
        assert!(bus.insert(0x104, 8, a.clone()).is_err());
        let mut d = [0u8; 1];
        assert!(bus.read(0x103, &mut d));
        assert_eq!(d[0], 3);
        assert!(!bus.read(0x108, &mut d));
        assert!(!bus.read(0xff, &mut d));
        assert_eq!(bus.write(0x101, &[7]), Some(WriteOutcome::Done));
        assert_eq!(bus.write(0x300, &[7]), None);
        assert_eq!(a.lock().unwrap().0, vec![(1, vec![7])]);
    }
}
