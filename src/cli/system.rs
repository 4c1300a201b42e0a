//! `version`, `info`.

use crate::engine::{Engine, EngineError};

pub fn version() -> Result<i32, EngineError> {
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    println!("twinbox version {}", env!("CARGO_PKG_VERSION"));
    println!(" Isolation models: process (namespaces + cgroups), vm (KVM microVM)");
    println!(" OS/Arch:          linux/amd64");
    println!(" Host kernel:      {kernel}");
    Ok(0)
}

pub fn info(engine: &Engine) -> Result<i32, EngineError> {
    let i = engine.info()?;
    println!("Containers: {}", i.containers);
    println!(" Running: {}", i.running);
    println!(" Paused: {}", i.paused);
    println!(" Stopped: {}", i.stopped);
    println!("Images: {}", i.images);
    println!("Storage Driver: overlay");
    println!("Cgroup Version: {}", i.cgroup_version);
    println!("Default Isolation: {}", i.default_isolation);
    println!("Kernel Version: {}", i.kernel);
    println!("KVM: {}", i.kvm);
    println!("Root Dir: {}", i.root);
    println!("Run Dir: {}", i.run_root);
    Ok(0)
}
