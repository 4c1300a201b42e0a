//! Starting the backend a container's spec names.

use crate::launch::rootfs::RootfsPlan;
use crate::paths::Paths;
use crate::process::{ProcessSandbox, ProcessStart};
use crate::sandbox::{Sandbox, SandboxError, Trace, WorkloadIo};
use crate::spec::Isolation;
use crate::state::ContainerRecord;
use crate::vmm::sandbox::{VmSandbox, VmStart};
use std::path::PathBuf;

pub fn start_backend(
    paths: &Paths,
    rec: &ContainerRecord,
    trace: Trace,
) -> Result<(Box<dyn Sandbox>, WorkloadIo), SandboxError> {
    match rec.spec.isolation {
        Isolation::Process => {
            let dir = paths.container_dir(&rec.id);
            let target = paths.rootfs_mount(&rec.id);
            std::fs::create_dir_all(&target)?;
            for d in ["upper", "work"] {
                std::fs::create_dir_all(dir.join(d))?;
            }
            let plan = RootfsPlan {
                lower: rec.layers.iter().map(PathBuf::from).collect(),
                upper: dir.join("upper"),
                work: dir.join("work"),
                target,
                etc_files: vec![
                    (dir.join("hostname"), "/etc/hostname"),
                    (dir.join("hosts"), "/etc/hosts"),
                    (dir.join("resolv.conf"), "/etc/resolv.conf"),
                ],
            };
            let (sb, io) = ProcessSandbox::start(ProcessStart {
                id: rec.id.clone(),
                spec: rec.spec.clone(),
                rootfs: plan,
                trace: Some(trace),
            })?;
            Ok((Box::new(sb), io))
        }
        Isolation::Vm => {
            let files = rec.vm.as_ref().ok_or_else(|| {
                SandboxError::Other("the container has no VM files; recreate it".into())
            })?;
            let dir = paths.container_dir(&rec.id);
            let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap_or_default();
            let (sb, io) = VmSandbox::start(VmStart {
                spec: rec.spec.clone(),
                kernel: files.kernel.clone(),
                initrd: files.initrd.clone(),
                rootfs: files.rootfs.clone(),
                scratch: files.scratch.clone(),
                run_dir: paths.run_dir(&rec.id),
                console_log: dir.join("console.log"),
                etc: vec![
                    ("/etc/hostname".into(), read("hostname")),
                    ("/etc/hosts".into(), read("hosts")),
                    ("/etc/resolv.conf".into(), read("resolv.conf")),
                ],
                trace: Some(trace),
            })?;
            Ok((Box::new(sb), io))
        }
    }
}
