//! `twinbox vm-boot`: boot a kernel in a bare microVM (no container), for debugging the
//! VMM and measuring it. The serial console goes to stderr.

use crate::engine::EngineError;
use crate::vmm::{Vm, VmConfig, VmDisk, VmEnd, VmVsock};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct VmBootArgs {
    /// Kernel: vmlinux (PVH) or bzImage
    #[arg(long)]
    kernel: PathBuf,
    /// Initramfs (cpio)
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// Extra kernel command line
    #[arg(long, default_value = "")]
    cmdline: String,
    /// Guest memory in MiB
    #[arg(long, default_value_t = 256)]
    mem: u64,
    #[arg(long, default_value_t = 1)]
    cpus: u8,
    /// Disk image, PATH or PATH:ro (repeatable)
    #[arg(long)]
    disk: Vec<String>,
    /// vsock unix socket base path (guest CID 3)
    #[arg(long)]
    vsock: Option<PathBuf>,
    /// TAP device for a virtio-net NIC (created if missing)
    #[arg(long)]
    tap: Option<String>,
    /// Give up after this many seconds
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Pass `quiet` to the kernel
    #[arg(long)]
    quiet: bool,
}

pub fn vm_boot(a: VmBootArgs) -> Result<i32, EngineError> {
    let disks = a
        .disk
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let (path, ro) = match d.strip_suffix(":ro") {
                Some(p) => (p, true),
                None => (d.as_str(), false),
            };
            VmDisk {
                path: PathBuf::from(path),
                read_only: ro,
                id: format!("disk{i}"),
            }
        })
        .collect();
    let vm = Vm::start(VmConfig {
        kernel: a.kernel,
        initrd: a.initrd,
        cmdline: a.cmdline,
        mem_bytes: a.mem << 20,
        vcpus: a.cpus,
        disks,
        shares: vec![],
        net: match a.tap {
            Some(name) => Some(crate::vmm::VmNet {
                tap: crate::network::tap::open(&name)
                    .map_err(|e| crate::engine::EngineError::Invalid(format!("TAP {name}: {e}")))?,
                mac: [0x02, 0x74, 0x62, 0x00, 0x00, 0x01],
            }),
            None => None,
        },
        vsock: a.vsock.map(|p| VmVsock {
            cid: 3,
            uds_base: p,
            connect_base: None,
        }),
        console: Box::new(std::io::stderr()),
        quiet: a.quiet,
        trace: None,
        before_run: None,
        kvm: None,
    })
    .map_err(|e| EngineError::Invalid(crate::monitor::error_chain(&e)))?;
    let end = vm.wait(Some(Duration::from_secs(a.timeout)));
    for (name, d) in &vm.boot.steps {
        eprintln!("vmm: {name:<20} {:>8.3} ms", d.as_secs_f64() * 1e3);
    }
    eprintln!(
        "vmm: set-up to first KVM_RUN {:.3} ms",
        vm.boot.setup().as_secs_f64() * 1e3
    );
    if let Some(b) = vm.boot.guest_boot() {
        eprintln!("vmm: guest boot to agent {:.1} ms", b.as_secs_f64() * 1e3);
    }
    match end {
        Some(VmEnd::Shutdown) | Some(VmEnd::Stopped) => {
            eprintln!("vmm: guest shut down");
            Ok(0)
        }
        Some(VmEnd::InternalError { suberror }) => {
            if crate::vmm::is_pvm_host() {
                Err(EngineError::Invalid(
                    crate::vmm::VmmError::PvmHost.to_string(),
                ))
            } else {
                Err(EngineError::Invalid(format!(
                    "KVM internal error (suberror {suberror}): KVM could not emulate the guest"
                )))
            }
        }
        Some(other) => Err(EngineError::Invalid(format!("the VM ended: {other:?}"))),
        None => {
            vm.power_off();
            Err(EngineError::Invalid(format!(
                "the VM did not finish within {} s",
                a.timeout
            )))
        }
    }
}
