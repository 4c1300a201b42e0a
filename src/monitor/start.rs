//! Starting the backend a container's spec names.

use crate::paths::Paths;
use crate::process::rootfs::RootfsPlan;
use crate::process::{ProcessSandbox, ProcessStart};
use crate::sandbox::{Sandbox, SandboxError, WorkloadIo};
use crate::spec::Isolation;
use crate::state::ContainerRecord;
use std::path::PathBuf;

pub fn start_backend(
    paths: &Paths,
    rec: &ContainerRecord,
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
                trace: None,
            })?;
            Ok((Box::new(sb), io))
        }
        Isolation::Vm => Err(SandboxError::Unsupported(
            "the vm backend is not built yet".into(),
        )),
    }
}
