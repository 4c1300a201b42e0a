//! From what a container asks for (`spec::Security`: --privileged, --cap-add/--cap-drop,
//! --security-opt) to what confines its processes (`init::confine::Confinement`):
//! the capability set and a compiled seccomp filter. Runs on the host, for both
//! models. docs/security.md puts the defaults beside Docker's.

pub mod docker_profile;
pub mod seccomp;
pub mod subid;

use crate::init::caps;
use crate::init::confine::Confinement;
use crate::spec::{Seccomp, Security};

pub use seccomp::SeccompError;

/// The confinement of a container's processes. Compiled filters are kept in `cache`
/// (keyed by profile, capabilities and kernel): compiling Docker's profile takes
/// libseccomp ~10 ms, reading it back well under one.
pub fn confinement(
    sec: &Security,
    cap_last: u32,
    cache: Option<&std::path::Path>,
) -> Result<Confinement, SeccompError> {
    let caps =
        caps::resolve(sec.privileged, &sec.cap_add, &sec.cap_drop, cap_last) & caps::own_bounding();
    let profile = match (&sec.seccomp, sec.privileged) {
        (_, true) | (Seccomp::Unconfined, _) => None,
        (Seccomp::Default, false) => Some(docker_profile::profile()),
        (Seccomp::Custom(text), false) => Some(seccomp::parse(text)?),
    };
    Ok(Confinement {
        caps,
        no_new_privs: sec.no_new_privileges,
        seccomp: profile
            .map(|p| cached(cache, &p, caps, || seccomp::compile(&p, caps)))
            .transpose()?,
    })
}

/// The libseccomp the filters are compiled with (a new one may compile differently).
fn libseccomp_version() -> String {
    libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default()
}

fn cached(
    dir: Option<&std::path::Path>,
    p: &seccomp::Profile,
    caps: u64,
    compile: impl FnOnce() -> Result<Vec<u8>, SeccompError>,
) -> Result<Vec<u8>, SeccompError> {
    use sha2::Digest;
    let Some(dir) = dir else {
        return compile();
    };
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut h = sha2::Sha256::new();
    h.update(serde_json::to_vec(p).unwrap_or_default());
    h.update(format!(
        "\0{caps:x}\0{kernel}\0{}",
        env!("CARGO_PKG_VERSION")
    ));
    h.update(libseccomp_version());
    let path = dir.join(format!("seccomp-{}.bpf", hex::encode(&h.finalize()[..12])));
    // The file: the program's sha256, then the program; anything else is recompiled.
    if let Ok(b) = std::fs::read(&path) {
        if b.len() > 32 && (b.len() - 32).is_multiple_of(8) {
            let (sum, prog) = b.split_at(32);
            if sha2::Sha256::digest(prog).as_slice() == sum {
                return Ok(prog.to_vec());
            }
        }
    }
    let prog = compile()?;
    if std::fs::create_dir_all(dir).is_ok() {
        let mut data = sha2::Sha256::digest(&prog).to_vec();
        data.extend_from_slice(&prog);
        let _ = crate::util::fs::atomic_write(&path, &data);
    }
    Ok(prog)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_privileged_and_unconfined() {
        let d = confinement(&Security::default(), 40, None).unwrap();
        assert_eq!(d.caps, caps::default_mask());
        assert!(d.seccomp.is_some() && !d.no_new_privs);
        let p = confinement(
            &Security {
                privileged: true,
                ..Default::default()
            },
            40,
            None,
        )
        .unwrap();
        assert_eq!(p.caps, caps::all_mask(40) & caps::own_bounding());
        assert!(p.seccomp.is_none());
        let u = confinement(
            &Security {
                seccomp: Seccomp::Unconfined,
                no_new_privileges: true,
                ..Default::default()
            },
            40,
            None,
        )
        .unwrap();
        assert!(u.seccomp.is_none() && u.no_new_privs);
    }
}
