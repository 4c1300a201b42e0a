//! The microVM monitor: KVM, guest memory, a Linux kernel, vCPU threads, and virtio
//! devices on an MMIO bus. It knows nothing of images or containers: the engine hands it
//! files (kernel, initramfs, disks, a TAP, a vsock socket path) in a [`VmConfig`].

#[cfg(feature = "bench-support")]
pub mod bench_support;
pub mod boot;
pub mod bus;
pub mod devices;
pub mod event_loop;
pub mod exit;
pub mod filters;
pub mod jail;
pub mod jailed;
pub mod layout;
pub mod memory;
pub mod process;
pub mod vcpu;
mod vm;

pub use vm::{
    BeforeRun, BootTimes, ThreadFilters, Vm, VmConfig, VmDisk, VmEnd, VmNet, VmShare, VmVsock,
};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum VmmError {
    /// The host cannot run a standard guest kernel (PVM).
    #[error("this host's KVM is PVM-based (/sys/module/kvm_pvm) and cannot run a standard guest kernel: run the command in the lab (`twinbox lab -- …`) or on a host with VT-x/AMD-V")]
    PvmHost,
    #[error("KVM is not available: {0} (is /dev/kvm present and accessible? hardware virtualization must be enabled)")]
    NoKvm(String),
    #[error("KVM lacks a capability twinbox needs: {0}")]
    MissingCap(&'static str),
    #[error("{what}")]
    Kvm {
        what: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("guest memory: {0}")]
    Memory(String),
    #[error("guest kernel: {0}")]
    Kernel(String),
    #[error("kernel command line: {0}")]
    Cmdline(String),
    #[error("boot parameters: {0}")]
    BootParams(String),
    #[error("invalid VM configuration: {0}")]
    Config(String),
    #[error("device: {0}")]
    Device(String),
    #[error("VMM jail: {0}")]
    Jail(String),
    /// What the VMM process said went wrong.
    #[error("{0}")]
    Reported(String),
    #[error("I/O")]
    Io(#[from] std::io::Error),
}

impl VmmError {
    pub fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmmError {
        move |source| VmmError::Kvm { what, source }
    }
}

/// True on a PVM host, whose /dev/kvm cannot run a standard guest (docs/lab.md §1).
pub fn is_pvm_host() -> bool {
    std::path::Path::new("/sys/module/kvm_pvm").exists()
}
