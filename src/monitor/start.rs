//! Starting the backend a container's spec names.

use crate::init::rootfs::RootfsPlan;
use crate::microvm::virtiofsd::ShareSpec;
use crate::microvm::{VmSandbox, VmStart};
use crate::network::dns::Resolver;
use crate::network::session::{self, Session, StoreResolver};
use crate::network::NetworkError;
use crate::paths::Paths;
use crate::process::NetHook;
use crate::process::{ProcessSandbox, ProcessStart};
use crate::sandbox::{Sandbox, SandboxError, Trace, WorkloadIo};
use crate::spec::{Isolation, NetworkMode};
use crate::state::{ContainerRecord, Store};
use crate::vmm::VmNet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

fn net_err(e: NetworkError) -> SandboxError {
    SandboxError::Other(crate::util::error_chain(&e))
}

/// The container's capabilities and seccomp filter (compiled here, on the host, for
/// both models).
fn confinement(
    paths: &Paths,
    rec: &ContainerRecord,
) -> Result<crate::init::confine::Confinement, SandboxError> {
    crate::security::confinement(
        &rec.spec.security,
        crate::init::caps::last_cap(),
        Some(&paths.seccomp_cache()),
    )
    .map_err(|e| SandboxError::Other(crate::util::error_chain(&e)))
}

/// Start the container's sandbox with its network plugged in. For a process container
/// on a user network, the embedded DNS socket (inside its namespace) is put in `dns`.
pub fn start_backend(
    paths: &Paths,
    store: &Store,
    rec: &ContainerRecord,
    net: &Session,
    dns: &Arc<Mutex<Option<session::DnsSockets>>>,
    trace: Trace,
) -> Result<(Box<dyn Sandbox>, WorkloadIo), SandboxError> {
    match rec.spec.isolation {
        Isolation::Process => start_process(paths, rec, net, dns, trace),
        Isolation::Vm => start_vm(paths, store, rec, net, trace),
    }
}

/// A process container: its overlay root, plan of mounts, and the hook that plugs its
/// network namespace in once it exists.
fn start_process(
    paths: &Paths,
    rec: &ContainerRecord,
    net: &Session,
    dns: &Arc<Mutex<Option<session::DnsSockets>>>,
    trace: Trace,
) -> Result<(Box<dyn Sandbox>, WorkloadIo), SandboxError> {
    let dir = paths.container_dir(&rec.id);
    let target = paths.rootfs_mount(&rec.id);
    std::fs::create_dir_all(&target)?;
    for d in ["upper", "work"] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    if let Some(m) = rec.spec.security.userns {
        // A remapped root owns its /etc files, as any root owns them.
        for f in ["hostname", "hosts", "resolv.conf"] {
            let _ = std::os::unix::fs::chown(dir.join(f), Some(m.uid), Some(m.gid));
        }
    }
    let plan = RootfsPlan {
        root_fs: None,
        lower: rec.layers.iter().map(PathBuf::from).collect(),
        upper: dir.join("upper"),
        work: dir.join("work"),
        target,
        etc_files: vec![
            (dir.join("hostname"), "/etc/hostname"),
            (dir.join("hosts"), "/etc/hosts"),
            (dir.join("resolv.conf"), "/etc/resolv.conf"),
        ],
        mounts: crate::volume::plan_process_mounts(&paths.root, &rec.spec.mounts),
        privileged: rec.spec.security.privileged,
        read_only: rec.spec.security.read_only,
    };
    let net_hook: Option<NetHook> = (rec.spec.network == NetworkMode::Bridge).then(|| {
        let rec = rec.clone();
        let bridges = net.bridges.clone();
        let dns = dns.clone();
        Box::new(move |pid: i32| {
            let s = Session {
                bridges: bridges.clone(),
                reservations: Vec::new(),
            };
            let sock = session::attach_process(&rec, &s, pid).map_err(net_err)?;
            *dns.lock().unwrap_or_else(|e| e.into_inner()) = sock;
            Ok(())
        }) as NetHook
    });
    let (sb, io) = ProcessSandbox::start(ProcessStart {
        id: rec.id.clone(),
        spec: rec.spec.clone(),
        rootfs: plan,
        trace: Some(trace),
        net_hook,
        confinement: confinement(paths, rec)?,
    })?;
    Ok((Box::new(sb), io))
}

/// A microVM container: its root and volumes as virtio-fs shares, its TAP, its DNS.
fn start_vm(
    paths: &Paths,
    store: &Store,
    rec: &ContainerRecord,
    net: &Session,
    trace: Trace,
) -> Result<(Box<dyn Sandbox>, WorkloadIo), SandboxError> {
    let files = rec
        .vm
        .as_ref()
        .ok_or_else(|| SandboxError::Other("the container has no VM files; recreate it".into()))?;
    let dir = paths.container_dir(&rec.id);
    let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap_or_default();
    // The root: the overlay a process container gets, mounted for virtiofsd
    // alone and shared; then the volumes and bind mounts.
    let target = paths.rootfs_mount(&rec.id);
    std::fs::create_dir_all(&target)?;
    for d in ["upper", "work"] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    let lower: Vec<PathBuf> = rec.layers.iter().map(PathBuf::from).collect();
    let mut shares = vec![ShareSpec {
        tag: crate::guest::protocol::ROOT_SHARE.into(),
        dir: target,
        read_only: false,
        overlay: Some(crate::init::rootfs::overlay_options_of(
            &lower,
            &dir.join("upper"),
            &dir.join("work"),
        )),
        mknod: true,
    }];
    shares.extend(crate::volume::vm::shares(&paths.root, &rec.spec.mounts));
    let (sb, io) = VmSandbox::start(VmStart {
        id: rec.id.clone(),
        spec: rec.spec.clone(),
        kernel: files.kernel.clone(),
        initrd: files.initrd.clone(),
        shares,
        run_dir: paths.run_dir(&rec.id),
        console_log: dir.join("console.log"),
        etc: vec![
            ("/etc/hostname".into(), read("hostname")),
            ("/etc/hosts".into(), read("hosts")),
            ("/etc/resolv.conf".into(), read("resolv.conf")),
        ],
        net: session::attach_vm(rec, net)
            .map_err(net_err)?
            .zip(rec.spec.interfaces.first())
            .map(|(f, i)| VmNet { tap: f, mac: i.mac }),
        dns: rec
            .spec
            .embedded_dns
            .then(|| Arc::new(StoreResolver::new(store.clone(), &rec.id)) as Arc<dyn Resolver>),
        trace: Some(trace),
        confinement: confinement(paths, rec)?,
    })?;
    Ok((Box::new(sb), io))
}
