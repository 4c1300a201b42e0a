//! Booting Linux: load the kernel (vmlinux with a PVH note, or bzImage), write the boot
//! parameters, the command line and the MP table, and set up the vCPUs' registers.

pub mod cmdline;
pub mod cpuid;
pub mod loader;
pub mod mptable;
pub mod msrs;
pub mod params;
pub mod regs;

/// How the kernel is entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryMode {
    /// 32-bit protected mode at the PVH entry point; rbx = start_info.
    Pvh,
    /// 64-bit Linux boot protocol; rsi = zero page.
    Linux64,
}

/// Where the kernel landed and how to enter it.
#[derive(Debug, Clone, Copy)]
pub struct KernelEntry {
    pub entry: u64,
    pub mode: EntryMode,
    /// First free guest address after the kernel image.
    pub kernel_end: u64,
    /// A bzImage's setup header, to start the zero page from.
    pub setup_header: Option<linux_loader::loader::bootparam::setup_header>,
}
