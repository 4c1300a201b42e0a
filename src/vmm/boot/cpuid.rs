//! CPUID as the guest sees it: KVM's supported set, filtered and completed per vCPU.

use kvm_bindings::{kvm_cpuid_entry2, CpuId};

const LEAF_FEATURES: u32 = 0x1;
const LEAF_CACHE_PARAMS: u32 = 0x4;
const LEAF_POWER: u32 = 0x6;
const LEAF_PMU: u32 = 0xa;
const LEAF_TOPOLOGY: u32 = 0xb;
const LEAF_TOPOLOGY_V2: u32 = 0x1f;
const LEAF_AMD_SIZES: u32 = 0x8000_0008;
const LEAF_EXT_FEATURES: u32 = 0x8000_0001;

const ECX_HYPERVISOR: u32 = 1 << 31;
const ECX_TSC_DEADLINE: u32 = 1 << 24;
const ECX_VMX: u32 = 1 << 5;
const EXT_ECX_SVM: u32 = 1 << 2;
const EDX_HTT: u32 = 1 << 28;
const ECX_EPB: u32 = 1 << 3;

/// Patch one entry for vCPU `id` of `count`.
pub fn filter_entry(e: &mut kvm_cpuid_entry2, id: u8, count: u8, tsc_deadline: bool) {
    match e.function {
        LEAF_FEATURES => {
            // APIC id, CLFLUSH line size (8 * 8 bytes), logical processor count.
            e.ebx = (u32::from(id) << 24) | (8 << 8);
            if count > 1 {
                e.ebx |= (u32::from(count).next_power_of_two()) << 16;
                e.edx |= EDX_HTT;
            }
            // We are a hypervisor: without this bit the guest ignores the KVM leaves.
            e.ecx |= ECX_HYPERVISOR;
            // Nested virtualization is not offered.
            e.ecx &= !ECX_VMX;
            if tsc_deadline {
                e.ecx |= ECX_TSC_DEADLINE;
            }
        }
        LEAF_CACHE_PARAMS if e.eax & 0x1f != 0 => {
            let cores = u32::from(count - 1) & 0x3f;
            e.eax = (e.eax & !(0x3f << 26)) | (cores << 26);
        }
        LEAF_POWER => e.ecx &= !ECX_EPB,
        LEAF_PMU => {
            e.eax = 0;
            e.ebx = 0;
            e.ecx = 0;
            e.edx = 0;
        }
        LEAF_TOPOLOGY | LEAF_TOPOLOGY_V2 => {
            e.edx = u32::from(id);
            match e.index {
                0 => {
                    // SMT level: one thread per core.
                    e.eax = 0;
                    e.ebx = 1;
                    e.ecx = 1 << 8;
                }
                1 => {
                    // Core level: `count` cores.
                    e.eax = 32 - (u32::from(count).next_power_of_two()).leading_zeros() - 1;
                    e.ebx = u32::from(count);
                    e.ecx = (2 << 8) | 1;
                }
                _ => {
                    e.eax = 0;
                    e.ebx = 0;
                    e.ecx = e.index;
                }
            }
        }
        LEAF_AMD_SIZES => e.ecx = (e.ecx & !0xff) | u32::from(count - 1),
        LEAF_EXT_FEATURES => e.ecx &= !EXT_ECX_SVM,
        _ => {}
    }
}

/// The CPUID table for vCPU `id` of `count`.
pub fn for_vcpu(supported: &CpuId, id: u8, count: u8, tsc_deadline: bool) -> CpuId {
    let mut c = supported.clone();
    for e in c.as_mut_slice() {
        filter_entry(e, id, count, tsc_deadline);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            ..Default::default()
        }
    }

    #[test]
    fn leaf1_has_apic_id_and_hypervisor_bit() {
        let mut e = entry(1, 0);
        e.ecx = ECX_VMX;
        filter_entry(&mut e, 3, 4, true);
        assert_eq!(e.ebx >> 24, 3);
        assert_eq!((e.ebx >> 16) & 0xff, 4);
        assert!(e.ecx & ECX_HYPERVISOR != 0);
        assert!(e.ecx & ECX_VMX == 0);
        assert!(e.ecx & ECX_TSC_DEADLINE != 0);
        assert!(e.edx & EDX_HTT != 0);
    }

    #[test]
    fn topology_counts_cores() {
        let mut e = entry(0xb, 1);
        filter_entry(&mut e, 1, 4, false);
        assert_eq!((e.eax, e.ebx, e.edx), (2, 4, 1));
        let mut e = entry(0x8000_0008, 0);
        filter_entry(&mut e, 0, 2, false);
        assert_eq!(e.ecx & 0xff, 1);
        let mut e = entry(0x8000_0001, 0);
        e.ecx = EXT_ECX_SVM;
        filter_entry(&mut e, 0, 1, false);
        assert_eq!(e.ecx, 0);
    }
}
