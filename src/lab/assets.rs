//! What the lab's emulated machine (L1) is made of, collected from the host and Debian's
//! packages, and cached: Debian's cloud kernel and its modules (kvm, kvm-amd, overlay,
//! tun, bridge, veth, nftables, virtio-blk and their dependencies), busybox, and
//! mkfs.ext4, nft and GNU tar with their libraries.

use super::LabError;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Modules L1 loads, in an order that satisfies dependencies (resolved below).
const WANTED_MODULES: &[&str] = &[
    "irqbypass",
    "kvm",
    "kvm-amd",
    "overlay",
    "tun",
    "veth",
    "bridge",
    // loop devices: a stopped microVM's scratch disk is read for commit/export
    "loop",
    // nftables for twinbox's NAT and published ports
    "nf_tables",
    "nft_chain_nat",
    "nft_nat",
    "nft_masq",
    "nft_fib_ipv4",
    "nft_ct",
    // read-only virtio disks (`twinbox lab --disk`): q35's virtio is PCI
    "virtio_pci",
    "virtio_blk",
];

pub struct L1Kernel {
    pub vmlinuz: PathBuf,
    /// Module files in load order.
    pub modules: Vec<PathBuf>,
    pub version: String,
}

fn run(cmd: &mut Command, what: &str) -> Result<String, LabError> {
    let out = cmd
        .output()
        .map_err(|e| LabError::Tool(format!("{what}: {e}")))?;
    if !out.status.success() {
        return Err(LabError::Tool(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The versioned kernel package behind linux-image-cloud-amd64.
fn cloud_kernel_package() -> Result<(String, String), LabError> {
    let resolve = || -> Option<String> {
        let out = Command::new("apt-cache")
            .args(["depends", "linux-image-cloud-amd64"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
            l.trim()
                .strip_prefix("Depends: ")
                .filter(|p| {
                    p.starts_with("linux-image-")
                        && p.chars().nth(12).is_some_and(|c| c.is_ascii_digit())
                })
                .map(String::from)
        })
    };
    let pkg = match resolve() {
        Some(p) => p,
        None => {
            run(
                Command::new("apt-get").args(["update", "-qq"]),
                "apt-get update",
            )?;
            resolve().ok_or_else(|| {
                LabError::Tool("cannot resolve linux-image-cloud-amd64 to a kernel package".into())
            })?
        }
    };
    let show = run(
        Command::new("apt-cache").args(["show", "--no-all-versions", &pkg]),
        "apt-cache show",
    )?;
    let ver = show
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .unwrap_or("unknown")
        .to_string();
    Ok((pkg, ver))
}

fn find_module(root: &Path, name: &str) -> Option<PathBuf> {
    let file = format!("{}.ko", name.replace('_', "-"));
    let file2 = format!("{}.ko", name.replace('-', "_"));
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(n) = p.file_name().and_then(|n| n.to_str()) {
                if n == file || n == file2 {
                    return Some(p);
                }
            }
        }
    }
    None
}

fn module_deps(ko: &Path) -> Result<Vec<String>, LabError> {
    let out = run(
        Command::new("modinfo").args(["-F", "depends"]).arg(ko),
        "modinfo (install kmod)",
    )?;
    Ok(out
        .trim()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect())
}

/// Download (once) Debian's cloud kernel and collect the modules the lab loads.
pub fn l1_kernel(cache: &Path) -> Result<L1Kernel, LabError> {
    let (pkg, ver) = cloud_kernel_package()?;
    // The module list is part of the key: adding one re-extracts the package.
    let wanted = {
        use sha2::Digest;
        hex::encode(&sha2::Sha256::digest(WANTED_MODULES.join(",").as_bytes())[..6])
    };
    let dir = cache.join("l1").join(format!("{pkg}_{ver}-{wanted}"));
    let order_file = dir.join("modules.order");
    if !(dir.join("vmlinuz").exists() && order_file.exists()) {
        eprintln!("lab: fetching {pkg} {ver} (once)");
        let work = tempfile::Builder::new()
            .prefix("twinbox-lab")
            .tempdir()
            .map_err(|e| LabError::Tool(e.to_string()))?;
        // apt-get download drops privileges to _apt: let it write there.
        let _ = Command::new("chown").arg("_apt").arg(work.path()).status();
        run(
            Command::new("apt-get")
                .args(["download", "-q", &format!("{pkg}={ver}")])
                .current_dir(work.path()),
            "apt-get download",
        )?;
        let deb = std::fs::read_dir(work.path())
            .map_err(|e| LabError::Tool(e.to_string()))?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .ok_or_else(|| LabError::Tool("apt-get download produced no .deb".into()))?;
        let x = work.path().join("x");
        run(Command::new("dpkg").arg("-x").arg(&deb).arg(&x), "dpkg -x")?;
        let kver = pkg.trim_start_matches("linux-image-").to_string();
        let mods = x.join("lib/modules").join(&kver).join("kernel");
        // Resolve dependencies depth-first so each module comes after what it needs.
        let mut order: Vec<String> = Vec::new();
        let mut seen = BTreeSet::new();
        fn visit(
            name: &str,
            mods: &Path,
            seen: &mut BTreeSet<String>,
            order: &mut Vec<String>,
        ) -> Result<(), LabError> {
            let key = name.replace('_', "-");
            if !seen.insert(key.clone()) {
                return Ok(());
            }
            let ko = find_module(mods, name).ok_or_else(|| {
                LabError::Tool(format!("module {name} not in the kernel package"))
            })?;
            for d in module_deps(&ko)? {
                visit(&d, mods, seen, order)?;
            }
            order.push(key);
            Ok(())
        }
        for m in WANTED_MODULES {
            visit(m, &mods, &mut seen, &mut order)?;
        }
        let tmp = dir.with_extension("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(tmp.join("modules")).map_err(|e| LabError::Tool(e.to_string()))?;
        std::fs::copy(x.join(format!("boot/vmlinuz-{kver}")), tmp.join("vmlinuz"))
            .map_err(|e| LabError::Tool(format!("vmlinuz: {e}")))?;
        for m in &order {
            let src = find_module(&mods, m).expect("found above");
            std::fs::copy(&src, tmp.join("modules").join(format!("{m}.ko")))
                .map_err(|e| LabError::Tool(e.to_string()))?;
        }
        std::fs::write(tmp.join("modules.order"), order.join("\n"))
            .map_err(|e| LabError::Tool(e.to_string()))?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&tmp, &dir).map_err(|e| LabError::Tool(e.to_string()))?;
    }
    let order = std::fs::read_to_string(&order_file).map_err(|e| LabError::Tool(e.to_string()))?;
    Ok(L1Kernel {
        vmlinuz: dir.join("vmlinuz"),
        modules: order
            .lines()
            .map(|m| dir.join("modules").join(format!("{m}.ko")))
            .collect(),
        version: format!("{pkg} {ver}"),
    })
}

/// A host program and every library `ldd` lists for it (paths on the host).
pub fn program_with_libs(prog: &Path) -> Result<Vec<PathBuf>, LabError> {
    let mut v = vec![prog.to_path_buf()];
    let out = Command::new("ldd")
        .arg(prog)
        .output()
        .map_err(|e| LabError::Tool(format!("ldd: {e}")))?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.len() >= 3 && parts[1] == "=>" && parts[2].starts_with('/') {
            v.push(PathBuf::from(parts[2]));
        } else if parts.first().is_some_and(|p| p.starts_with('/')) {
            v.push(PathBuf::from(parts[0]));
        }
    }
    Ok(v)
}
