//! The vm backend on this host's own /dev/kvm. On a PVM host (these machines, docs/lab.md §1)
//! the VMM still creates the VM, loads the kernel and captures its banner on the serial
//! console, and `run --isolation vm` fails with one clear line; on a host with VT-x/AMD-V
//! the microVM runs.

mod common;
use common::*;

fn kernel() -> String {
    let k = std::env::var("TWINBOX_KERNEL")
        .unwrap_or_else(|_| "/var/cache/twinbox/kernel/current/vmlinux".into());
    assert!(
        std::path::Path::new(&k).exists(),
        "no guest kernel at {k}: build it with kernel-config/build.sh (scripts/setup.sh does)"
    );
    k
}

#[test]
fn run_on_this_hosts_kvm() {
    let tb = Tb::new();
    kernel();
    let o = tb.out(&["run", "--rm", "--isolation", "vm", "busybox", "uname", "-r"]);
    if twinbox::vmm::is_pvm_host() {
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(125));
        assert_eq!(err.trim_end().lines().count(), 1, "one clear line: {err}");
        assert!(err.contains("PVM") && err.contains("twinbox lab"), "{err}");
        tb.assert_clean(&[]);
    } else {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let host = nix::sys::utsname::uname().unwrap();
        assert_ne!(stdout(&o).trim(), host.release().to_str().unwrap());
    }
}

#[test]
fn vmm_boots_the_kernel_to_its_banner() {
    require_root();
    let k = kernel();
    let o = std::process::Command::new(bin())
        .args(["vm-boot", "--kernel", &k, "--timeout", "60"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("Linux version"),
        "the kernel banner on the serial console:\n{err}"
    );
    assert!(
        err.contains("BIOS-e820"),
        "our e820 map reached the kernel:\n{err}"
    );
    assert!(err.contains("set-up to first KVM_RUN"), "{err}");
    if twinbox::vmm::is_pvm_host() {
        assert_eq!(o.status.code(), Some(125));
        let last = err.trim_end().lines().last().unwrap();
        assert!(
            last.contains("PVM-based"),
            "ends with the one clear line: {last}"
        );
        assert!(
            !err.contains("RIP:") && !err.contains("rax"),
            "no register dump"
        );
    }
}
