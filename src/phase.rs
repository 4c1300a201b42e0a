//! The start-up steps of a container, one enum for both models: the backends trace
//! them as they happen, the monitor records them, `run --explain` prints each with one
//! plain sentence (what it does and why), and `compare` and the bench read the same
//! names as their phase rows. A new step is a new variant, and the compiler asks for
//! its sentence.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Called as each start-up step completes: (step, duration). The backends and the VMM
/// call it; the monitor records and reports what it hears.
pub type Trace = std::sync::Arc<dyn Fn(Phase, std::time::Duration) + Send + Sync>;

macro_rules! phases {
    ($($variant:ident = $name:literal, $model:ident, $sentence:literal;)*) => {
        /// One start-up step.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Phase {
            $($variant,)*
        }

        impl Phase {
            /// Every step, in the order a start takes them (process steps, then vm).
            pub const ALL: &'static [Phase] = &[$(Phase::$variant,)*];

            /// The step's name, as `--explain`, `compare` and records show it.
            pub fn name(self) -> &'static str {
                match self {
                    $(Phase::$variant => $name,)*
                }
            }

            /// One plain sentence: what the step does and why.
            pub fn sentence(self) -> &'static str {
                match self {
                    $(Phase::$variant => $sentence,)*
                }
            }

            /// Which isolation model takes the step.
            pub fn model(self) -> Model {
                match self {
                    $(Phase::$variant => Model::$model,)*
                }
            }
        }
    };
}

/// Who takes a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    Both,
    Process,
    Vm,
}

phases! {
    Image = "image", Both, "the image is found in the content-addressed store and its layers are unpacked (once, then shared)";
    Record = "record", Both, "the container gets an id, a name and a record in the state store";
    Cgroup = "cgroup", Process, "a cgroup is created for the container and its memory, CPU and pids limits are written";
    Clone = "clone", Process, "clone() starts the first process in new pid, mount, uts, ipc and network namespaces: it sees a world of its own but runs on the host's kernel";
    CgroupJoin = "cgroup join", Process, "the process is moved into the container's cgroup, so the limits apply to it and to everything it starts";
    Network = "network", Process, "the host end of the container's veth pair joins its bridge and the container end moves into the new network namespace, with its address and routes";
    Rootfs = "rootfs", Process, "an overlay of the image's read-only layers and a private writable layer becomes the root, with /proc, /sys, /dev and /etc files mounted in it";
    PivotRoot = "pivot_root", Process, "pivot_root: the container now sees the image as /, the host's / is detached";
    MaskedPaths = "masked paths", Process, "sensitive kernel files (/proc/kcore, /proc/sys, ...) are hidden or made read-only, as Docker does";
    HostnameNetwork = "hostname+network", Process, "the container's hostname is set and its loopback interface brought up";
    Exec = "exec", Process, "the process drops to the container's user and capabilities, sets no_new_privs, and execve()s the workload";
    VmFiles = "vm files", Vm, "the guest kernel and the agent's initramfs are found (built once, cached by content); no disk image is made: the root is the image's overlay, shared";
    Virtiofsd = "virtiofsd", Vm, "one virtiofsd per shared directory starts (the root: the same overlay a process container gets, mounted for it alone; then each volume), sandboxed in its own namespaces with seccomp; the guest reaches the host's files only through it, over virtio-fs";
    VmmProcess = "VMM process", Vm, "the VMM starts as a process of its own (the monitor keeps logs, DNS and records) and compiles a seccomp filter for each kind of thread it will run";
    CreateVm = "KVM_CREATE_VM", Vm, "KVM_CREATE_VM: the kernel creates an empty virtual machine, with an interrupt controller and a timer";
    GuestMemory = "guest memory", Vm, "guest RAM is mapped into the VMM and registered with KVM: the guest will see it as its physical memory";
    KernelLoad = "kernel load", Vm, "the guest's own Linux kernel (vmlinux) is loaded into guest memory, entered through its PVH entry point";
    Devices = "devices", Vm, "virtual devices are placed on the buses: serial console, a virtio-fs device per share (guest RAM is a memfd its virtiofsd maps), a virtio-net NIC, a virtio-vsock socket";
    BootParams = "boot parameters", Vm, "the kernel command line, the memory map and the MP table (the guest's CPUs) are written for the kernel to read";
    Vcpus = "vCPUs", Vm, "virtual CPUs are created and given registers, CPUID and MSRs for the kernel's entry point";
    Jail = "jail", Vm, "the VM built, the VMM pivots into an empty directory and becomes an unprivileged uid with no capabilities and no_new_privs: a guest that breaks a device finds nothing to use";
    StartVcpus = "start vCPU threads", Vm, "one host thread per vCPU enters KVM_RUN: the guest starts executing";
    BootToAgent = "boot to agent", Vm, "the guest kernel boots (memory, CPUs, devices, drivers) until its first process, the twinbox agent, runs";
    AgentConnect = "agent connect", Vm, "the agent mounts its filesystems and calls the host over vsock";
    StartWorkload = "start workload", Vm, "the agent mounts the root and the volumes over virtio-fs and starts the workload as PID 1 of its own namespace";
}

impl Phase {
    /// The step with this name.
    pub fn from_name(name: &str) -> Option<Phase> {
        Phase::ALL.iter().copied().find(|p| p.name() == name)
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Phase {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Phase {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Phase, D::Error> {
        let s = String::deserialize(d)?;
        Phase::from_name(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown phase {s:?}")))
    }
}

/// Phases as records keep them: a step a newer or older twinbox named and this one
/// does not know is dropped, so that one renamed step never makes a record unreadable.
pub fn deserialize_timings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(Phase, f64)>, D::Error> {
    let raw: Vec<(String, f64)> = Vec::deserialize(d)?;
    Ok(raw
        .into_iter()
        .filter_map(|(n, ms)| Phase::from_name(&n).map(|p| (p, ms)))
        .collect())
}

/// Print one step for `--explain`.
pub fn print_step(step: Phase, ms: f64) {
    eprintln!("  {:<18} {ms:>9.2} ms  {}", step.name(), step.sentence());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_has_a_unique_name_and_a_sentence() {
        let mut seen = std::collections::HashSet::new();
        for p in Phase::ALL {
            assert!(!p.sentence().is_empty(), "{p}");
            assert!(seen.insert(p.name()), "{p} named twice");
            assert_eq!(Phase::from_name(p.name()), Some(*p));
        }
    }

    #[test]
    fn records_keep_names_and_drop_unknown_steps() {
        #[derive(Deserialize)]
        struct M {
            #[serde(deserialize_with = "deserialize_timings")]
            phases: Vec<(Phase, f64)>,
        }
        let m: M =
            serde_json::from_str(r#"{"phases":[["clone",1.5],["warp drive",2.0],["exec",0.25]]}"#)
                .unwrap();
        assert_eq!(m.phases, vec![(Phase::Clone, 1.5), (Phase::Exec, 0.25)]);
        assert_eq!(
            serde_json::to_string(&Phase::PivotRoot).unwrap(),
            "\"pivot_root\""
        );
    }
}
