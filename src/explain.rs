//! One plain sentence per start-up step: what it does and why. `run --explain` prints
//! them as the steps happen; `compare` uses the same names for its phase rows.

/// The sentence for a step, if twinbox knows it.
pub fn sentence(step: &str) -> &'static str {
    match step {
        // both models
        "image" => "the image is found in the content-addressed store and its layers are unpacked (once, then shared)",
        "record" => "the container gets an id, a name and a record in the state store",
        // process isolation
        "cgroup" => "a cgroup is created for the container and its memory, CPU and pids limits are written",
        "clone" => "clone() starts the first process in new pid, mount, uts, ipc and network namespaces: it sees a world of its own but runs on the host's kernel",
        "cgroup join" => "the process is moved into the container's cgroup, so the limits apply to it and to everything it starts",
        "rootfs" => "an overlay of the image's read-only layers and a private writable layer becomes the root, with /proc, /sys, /dev and /etc files mounted in it",
        "pivot_root" => "pivot_root: the container now sees the image as /, the host's / is detached",
        "masked paths" => "sensitive kernel files (/proc/kcore, /proc/sys, ...) are hidden or made read-only, as Docker does",
        "hostname+network" => "the container's hostname is set and its loopback interface brought up",
        "exec" => "the process drops to the container's user and capabilities, sets no_new_privs, and execve()s the workload",
        // vm isolation
        "vm files" => "the guest kernel and the agent's initramfs are found (built once, cached by content); no disk image is made: the root is the image's overlay, shared",
        "virtiofsd" => "one virtiofsd per shared directory starts (the root: the same overlay a process container gets, mounted for it alone; then each volume), sandboxed in its own namespaces with seccomp; the guest reaches the host's files only through it, over virtio-fs",
        "VMM process" => "the VMM starts as a process of its own (the monitor keeps logs, DNS and records) and compiles a seccomp filter for each kind of thread it will run",
        "KVM_CREATE_VM" => "KVM_CREATE_VM: the kernel creates an empty virtual machine, with an interrupt controller and a timer",
        "guest memory" => "guest RAM is mapped into the VMM and registered with KVM: the guest will see it as its physical memory",
        "kernel load" => "the guest's own Linux kernel (vmlinux) is loaded into guest memory, entered through its PVH entry point",
        "devices" => "virtual devices are placed on the buses: serial console, a virtio-fs device per share (guest RAM is a memfd its virtiofsd maps), a virtio-net NIC, a virtio-vsock socket",
        "boot parameters" => "the kernel command line, the memory map and the MP table (the guest's CPUs) are written for the kernel to read",
        "vCPUs" => "virtual CPUs are created and given registers, CPUID and MSRs for the kernel's entry point",
        "jail" => "the VM built, the VMM pivots into an empty directory and becomes an unprivileged uid with no capabilities and no_new_privs: a guest that breaks a device finds nothing to use",
        "start vCPU threads" => "one host thread per vCPU enters KVM_RUN: the guest starts executing",
        "boot to agent" => "the guest kernel boots (memory, CPUs, devices, drivers) until its first process, the twinbox agent, runs",
        "agent connect" => "the agent mounts its filesystems and calls the host over vsock",
        "start workload" => "the agent mounts the root and the volumes over virtio-fs and starts the workload as PID 1 of its own namespace",
        _ => "",
    }
}

/// Print one step for `--explain`.
pub fn print_step(step: &str, ms: f64) {
    let s = sentence(step);
    eprintln!("  {step:<18} {ms:>9.2} ms  {s}");
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_traced_step_has_a_sentence() {
        for s in [
            "cgroup",
            "clone",
            "cgroup join",
            "rootfs",
            "pivot_root",
            "masked paths",
            "hostname+network",
            "exec",
            "KVM_CREATE_VM",
            "guest memory",
            "kernel load",
            "devices",
            "boot parameters",
            "vCPUs",
            "VMM process",
            "jail",
            "start vCPU threads",
            "boot to agent",
            "agent connect",
            "start workload",
            "image",
            "vm files",
            "virtiofsd",
        ] {
            assert!(!super::sentence(s).is_empty(), "{s}");
        }
    }
}
