//! The Intel MP table (spec 1.4): how a guest without ACPI learns its CPUs, its IOAPIC
//! and how ISA IRQs are wired. Linux scans the EBDA for the floating pointer.

use crate::vmm::layout::{IOAPIC_ADDR, LAPIC_ADDR, MPTABLE_START};
use crate::vmm::memory::GuestMemoryMmap;
use crate::vmm::VmmError;
use vm_memory::{Bytes, GuestAddress};

const APIC_VERSION: u8 = 0x14;
const CPU_ENABLED: u8 = 1;
const CPU_BSP: u8 = 2;
const NUM_IRQS: u8 = 24;

/// Largest vCPU count the table can describe (the IOAPIC takes one xAPIC id).
pub const MAX_CPUS: u8 = 254;

fn checksum(bytes: &[u8]) -> u8 {
    let sum = bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    (!sum).wrapping_add(1)
}

fn push_u16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn push_u32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}

/// The table's bytes for `cpus` vCPUs, to be placed at `base`.
pub fn build(cpus: u8, base: u64) -> Result<Vec<u8>, VmmError> {
    if cpus == 0 || cpus > MAX_CPUS {
        return Err(VmmError::Config(format!(
            "{cpus} vCPUs: between 1 and {MAX_CPUS} are supported"
        )));
    }
    let ioapic_id = cpus;
    // Entries of the configuration table.
    let mut entries = Vec::new();
    let mut count: u16 = 0;
    for i in 0..cpus {
        entries.push(0u8); // type: processor
        entries.push(i); // local APIC id
        entries.push(APIC_VERSION);
        entries.push(CPU_ENABLED | if i == 0 { CPU_BSP } else { 0 });
        push_u32(&mut entries, 0x600); // signature: family 6
        push_u32(&mut entries, 0x201); // features: FPU | APIC
        push_u32(&mut entries, 0);
        push_u32(&mut entries, 0);
        count += 1;
    }
    entries.extend_from_slice(&[1, 0]); // bus 0
    entries.extend_from_slice(b"ISA   ");
    count += 1;
    entries.extend_from_slice(&[2, ioapic_id, APIC_VERSION, 1]); // IOAPIC, usable
    push_u32(&mut entries, IOAPIC_ADDR);
    count += 1;
    for irq in 0..NUM_IRQS {
        // type 3: I/O interrupt, INT, polarity/trigger per bus, bus 0 irq -> ioapic pin
        entries.extend_from_slice(&[3, 0, 0, 0, 0, irq, ioapic_id, irq]);
        count += 1;
    }
    // type 4: local interrupts: ExtINT -> LINT0 of every CPU, NMI -> LINT1 of every CPU
    entries.extend_from_slice(&[4, 3, 0, 0, 0, 0, 0xff, 0]);
    entries.extend_from_slice(&[4, 1, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let table_addr = base + 16;
    let mut table = Vec::new();
    table.extend_from_slice(b"PCMP");
    push_u16(&mut table, (44 + entries.len()) as u16);
    table.push(4); // spec 1.4
    table.push(0); // checksum, below
    table.extend_from_slice(b"TWINBOX ");
    table.extend_from_slice(b"MICROVM     ");
    push_u32(&mut table, 0); // oem table
    push_u16(&mut table, 0); // oem size
    push_u16(&mut table, count);
    push_u32(&mut table, LAPIC_ADDR);
    push_u32(&mut table, 0);
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut mpf = Vec::new();
    mpf.extend_from_slice(b"_MP_");
    push_u32(&mut mpf, table_addr as u32);
    mpf.push(1); // length in 16-byte units
    mpf.push(4); // spec 1.4
    mpf.push(0); // checksum
    mpf.extend_from_slice(&[0; 5]); // features: no default config, no IMCR
    mpf[10] = checksum(&mpf);

    let mut out = mpf;
    out.extend_from_slice(&table);
    Ok(out)
}

/// Write the MP table for `cpus` vCPUs into guest memory.
pub fn write(mem: &GuestMemoryMmap, cpus: u8) -> Result<(), VmmError> {
    let bytes = build(cpus, MPTABLE_START)?;
    mem.write_slice(&bytes, GuestAddress(MPTABLE_START))
        .map_err(|e| VmmError::Memory(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    #[test]
    fn checksums_and_layout() {
        for cpus in [1u8, 2, 8] {
            let t = build(cpus, MPTABLE_START).unwrap();
            assert_eq!(&t[..4], b"_MP_");
            assert_eq!(sum(&t[..16]), 0, "floating pointer checksum");
            let ptr = u32::from_le_bytes([t[4], t[5], t[6], t[7]]) as u64;
            assert_eq!(ptr, MPTABLE_START + 16);
            let cfg = &t[16..];
            assert_eq!(&cfg[..4], b"PCMP");
            let len = u16::from_le_bytes([cfg[4], cfg[5]]) as usize;
            assert_eq!(len, cfg.len());
            assert_eq!(sum(cfg), 0, "config table checksum");
            assert_eq!(len, 44 + 20 * cpus as usize + 8 + 8 + 24 * 8 + 16);
            // first processor entry is the BSP
            assert_eq!(cfg[44], 0);
            assert_eq!(cfg[47], CPU_ENABLED | CPU_BSP);
            // fits below 640 KiB
            assert!(MPTABLE_START + t.len() as u64 <= 0xa0000);
        }
        assert!(build(0, MPTABLE_START).is_err());
        assert!(build(255, MPTABLE_START).is_err());
    }
}
