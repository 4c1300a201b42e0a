//! The three ways to ask for a mount, as Docker spells them:
//!
//! - `-v [SOURCE:]TARGET[:OPTS]`: SOURCE an absolute host path (bind) or a volume name;
//!   no SOURCE, an anonymous volume; OPTS `ro`, `rw`, `nocopy`;
//! - `--mount type=bind|volume|tmpfs,source=…,target=…[,readonly][,volume-nocopy]
//!   [,tmpfs-size=…][,tmpfs-mode=…]`;
//! - `--tmpfs TARGET[:size=…,mode=…,ro,exec]`.
//!
//! Pure: every spelling becomes a [`Mount`], or one error line.

use crate::spec::{Mount, MountKind};

fn mount(kind: MountKind, source: &str, target: &str) -> Mount {
    Mount {
        kind,
        source: source.to_string(),
        target: target.to_string(),
        readonly: false,
        anonymous: false,
        nocopy: false,
        tmpfs_size: None,
        tmpfs_mode: None,
        tmpfs_exec: false,
    }
}

/// A volume name Docker would accept.
pub fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    n.len() >= 2
        && c.next().is_some_and(|f| f.is_ascii_alphanumeric())
        && c.all(|x| x.is_ascii_alphanumeric() || "_.-".contains(x))
}

/// Checked, then cleaned (`/data/./x/` -> `/data/x`).
fn check_target(t: &str) -> Result<String, String> {
    if !t.starts_with('/') {
        return Err(format!(
            "invalid mount target {t:?}: it must be an absolute path"
        ));
    }
    if t.split('/').any(|c| c == "..") {
        return Err(format!("invalid mount target {t:?}: '..' is not allowed"));
    }
    let c = clean(t);
    if c == "/" {
        return Err(format!(
            "invalid mount target {t:?}: the root cannot be a mount"
        ));
    }
    // The kernel's views: a mount over (or into) them would replace what the
    // container's own procfs and sysfs show, and what masks them. /dev itself is the
    // container's tmpfs; single devices under it may be bound.
    let under = |p: &str| c == p || c.starts_with(&format!("{p}/"));
    if under("/proc") || under("/sys") || c == "/dev" || c == "/dev/pts" {
        return Err(format!(
            "invalid mount target {t:?}: /proc, /sys, /dev and /dev/pts belong to the container's kernel views"
        ));
    }
    Ok(c)
}

/// Strip trailing slashes and `.` components: `/data/./x/` -> `/data/x`.
fn clean(t: &str) -> String {
    let parts: Vec<&str> = t
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

fn source_kind(src: &str) -> Result<MountKind, String> {
    if src.starts_with('/') {
        if src.split('/').any(|c| c == "..") {
            return Err(format!("invalid bind source {src:?}: '..' is not allowed"));
        }
        Ok(MountKind::Bind)
    } else if valid_name(src) {
        Ok(MountKind::Volume)
    } else {
        Err(format!(
            "{src:?} includes invalid characters for a local volume name, only \
             \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed; host paths must be absolute"
        ))
    }
}

/// `-v`.
pub fn parse_volume_flag(spec: &str) -> Result<Mount, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, target, opts) = match parts.as_slice() {
        [t] => (None, *t, None),
        // SOURCE:TARGET, or TARGET:OPTS for an anonymous volume
        [s, t] if t.starts_with('/') => (Some(*s), *t, None),
        [t, o] => (None, *t, Some(*o)),
        [s, t, o] => (Some(*s), *t, Some(*o)),
        _ => return Err(format!("invalid volume specification {spec:?}")),
    };
    let target = check_target(target)?;
    let mut m = match src {
        None => {
            let mut m = mount(MountKind::Volume, "", &target);
            m.anonymous = true;
            m
        }
        Some(s) => mount(source_kind(s)?, s, &target),
    };
    for o in opts.unwrap_or("").split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => m.readonly = true,
            "rw" => m.readonly = false,
            "nocopy" if m.kind == MountKind::Volume => m.nocopy = true,
            // SELinux relabelling and propagation: nothing to do here (no SELinux
            // labels, and every mount is private to its container).
            "z" | "Z" | "private" | "rprivate" => {}
            _ => {
                return Err(format!(
                    "invalid volume option {o:?} in {spec:?}: use ro, rw or nocopy"
                ))
            }
        }
    }
    Ok(m)
}

fn parse_bool(k: &str, v: Option<&str>) -> Result<bool, String> {
    match v {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(x) => Err(format!("invalid value {x:?} for {k}: true or false")),
    }
}

fn parse_mode(v: &str) -> Result<u32, String> {
    u32::from_str_radix(v, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("invalid tmpfs mode {v:?}: octal bits like 1777"))
}

fn parse_size(v: &str) -> Result<u64, String> {
    crate::util::size::parse_size(v).map_err(|e| format!("invalid tmpfs size {v:?}: {e}"))
}

/// `--mount`.
pub fn parse_mount_flag(spec: &str) -> Result<Mount, String> {
    let mut kind = None;
    let mut source = None;
    let mut target = None;
    let mut readonly = false;
    let mut nocopy = false;
    let mut size = None;
    let mut mode = None;
    for field in spec.split(',').filter(|f| !f.is_empty()) {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (field, None),
        };
        let need = || v.ok_or_else(|| format!("invalid --mount field {field:?}: {k}=VALUE"));
        match k {
            "type" => {
                kind = Some(match need()? {
                    "bind" => MountKind::Bind,
                    "volume" => MountKind::Volume,
                    "tmpfs" => MountKind::Tmpfs,
                    t => return Err(format!("invalid --mount type {t:?}: bind, volume or tmpfs")),
                })
            }
            "source" | "src" => source = Some(need()?.to_string()),
            "target" | "destination" | "dst" => target = Some(need()?.to_string()),
            "readonly" | "ro" => readonly = parse_bool(k, v)?,
            "volume-nocopy" => nocopy = parse_bool(k, v)?,
            "tmpfs-size" => size = Some(parse_size(need()?)?),
            "tmpfs-mode" => mode = Some(parse_mode(need()?)?),
            _ => return Err(format!("unknown --mount field {k:?} in {spec:?}")),
        }
    }
    let kind = kind.unwrap_or(MountKind::Volume);
    let target = target.ok_or_else(|| format!("--mount {spec:?}: target= is required"))?;
    let target = check_target(&target)?;
    let mut m = mount(kind, "", &target);
    m.readonly = readonly;
    match kind {
        MountKind::Bind => {
            let s = source.ok_or_else(|| format!("--mount {spec:?}: a bind needs source="))?;
            if source_kind(&s)? != MountKind::Bind {
                return Err(format!(
                    "--mount {spec:?}: a bind source must be an absolute host path"
                ));
            }
            m.source = s;
        }
        MountKind::Volume => match source {
            Some(s) if source_kind(&s)? == MountKind::Volume => m.source = s,
            Some(s) => {
                return Err(format!(
                    "--mount {spec:?}: {s:?} is a path; use type=bind for host paths"
                ))
            }
            None => m.anonymous = true,
        },
        MountKind::Tmpfs => {
            if source.is_some() {
                return Err(format!("--mount {spec:?}: a tmpfs has no source"));
            }
        }
    }
    if kind != MountKind::Volume && nocopy {
        return Err(format!("--mount {spec:?}: volume-nocopy is for volumes"));
    }
    m.nocopy = nocopy;
    if kind != MountKind::Tmpfs && (size.is_some() || mode.is_some()) {
        return Err(format!("--mount {spec:?}: tmpfs-size/mode are for tmpfs"));
    }
    m.tmpfs_size = size;
    m.tmpfs_mode = mode;
    Ok(m)
}

/// `--tmpfs`.
pub fn parse_tmpfs_flag(spec: &str) -> Result<Mount, String> {
    let (target, opts) = spec.split_once(':').unwrap_or((spec, ""));
    let target = check_target(target)?;
    let mut m = mount(MountKind::Tmpfs, "", &target);
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o.split_once('=') {
            Some(("size", v)) => m.tmpfs_size = Some(parse_size(v)?),
            Some(("mode", v)) => m.tmpfs_mode = Some(parse_mode(v)?),
            None if o == "ro" => m.readonly = true,
            None if o == "rw" => m.readonly = false,
            None if o == "exec" => m.tmpfs_exec = true,
            None if o == "noexec" => m.tmpfs_exec = false,
            _ => {
                return Err(format!(
                    "invalid tmpfs option {o:?}: size=, mode=, ro, rw, exec, noexec"
                ))
            }
        }
    }
    Ok(m)
}

/// Every mount of a container, checked together: no target twice.
pub fn parse_all(
    volumes: &[String],
    mounts: &[String],
    tmpfs: &[String],
) -> Result<Vec<Mount>, String> {
    let mut out: Vec<Mount> = Vec::new();
    let all = volumes
        .iter()
        .map(|v| parse_volume_flag(v))
        .chain(mounts.iter().map(|m| parse_mount_flag(m)))
        .chain(tmpfs.iter().map(|t| parse_tmpfs_flag(t)));
    for m in all {
        let m = m?;
        if out.iter().any(|o| o.target == m.target) {
            return Err(format!("duplicate mount point: {}", m.target));
        }
        out.push(m);
    }
    // A target inside a volume or bind mount would be resolved in a tree other
    // containers (or the host) may change between the check and the mount.
    for a in &out {
        for b in &out {
            if a.kind != MountKind::Tmpfs && b.target.starts_with(&format!("{}/", a.target)) {
                return Err(format!(
                    "mount target {} is inside the {} at {}: mounts inside volumes and bind \
                     mounts are not supported",
                    b.target,
                    if a.kind == MountKind::Volume {
                        "volume"
                    } else {
                        "bind mount"
                    },
                    a.target
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dash_v_spellings() {
        let m = parse_volume_flag("data:/var/lib/data").unwrap();
        assert_eq!(
            (m.kind, m.source.as_str(), m.target.as_str()),
            (MountKind::Volume, "data", "/var/lib/data")
        );
        assert!(!m.readonly && !m.anonymous);
        let m = parse_volume_flag("/srv/www:/usr/share/www:ro").unwrap();
        assert_eq!((m.kind, m.readonly), (MountKind::Bind, true));
        let m = parse_volume_flag("/cache").unwrap();
        assert!(m.anonymous && m.kind == MountKind::Volume && m.source.is_empty());
        let m = parse_volume_flag("/cache:ro").unwrap();
        assert!(m.anonymous && m.readonly);
        assert!(parse_volume_flag("/srv:/srv:ro,z").unwrap().readonly);
        let m = parse_volume_flag("db:/data/./x/:nocopy").unwrap();
        assert_eq!(m.target, "/data/x");
        assert!(m.nocopy);
    }

    #[test]
    fn dash_v_refusals() {
        for bad in [
            "data",
            "data:relative",
            "data:/x:zz",
            "Bad Name:/x",
            "/a/../b:/x",
            "x:/",
            "x:/.",
            "x:/a/..",
            "a:/b:/c:ro",
            "/h:/x:nocopy",
            "d:/x/../y",
        ] {
            assert!(parse_volume_flag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mount_flag_spellings() {
        let m = parse_mount_flag("type=bind,source=/srv,target=/data,readonly").unwrap();
        assert_eq!(
            (m.kind, m.source.as_str(), m.readonly),
            (MountKind::Bind, "/srv", true)
        );
        let m = parse_mount_flag("type=volume,src=vol1,dst=/v,volume-nocopy").unwrap();
        assert_eq!(
            (m.kind, m.source.as_str(), m.nocopy),
            (MountKind::Volume, "vol1", true)
        );
        let m = parse_mount_flag("target=/anon").unwrap();
        assert!(m.anonymous);
        let m =
            parse_mount_flag("type=tmpfs,destination=/t,tmpfs-size=64m,tmpfs-mode=1770").unwrap();
        assert_eq!(m.tmpfs_size, Some(64 << 20));
        assert_eq!(m.tmpfs_mode, Some(0o1770));
        assert!(
            !parse_mount_flag("type=bind,src=/a,dst=/b,readonly=false")
                .unwrap()
                .readonly
        );
    }

    #[test]
    fn mount_flag_refusals() {
        for bad in [
            "type=nfs,target=/x",
            "type=bind,target=/x",
            "type=bind,source=vol,target=/x",
            "type=volume,source=/abs,target=/x",
            "type=tmpfs,source=x,target=/x",
            "type=volume,source=v",
            "type=volume,source=v,target=/x,tmpfs-size=1m",
            "type=bind,source=/a,target=/x,volume-nocopy",
            "type=tmpfs,target=/x,tmpfs-mode=99",
            "type=volume,target=/x,colour=blue",
            "type=volume,target=/x,readonly=maybe",
        ] {
            assert!(parse_mount_flag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tmpfs_flag() {
        let m = parse_tmpfs_flag("/run/cache:size=1m,mode=700,exec").unwrap();
        assert_eq!(
            (m.tmpfs_size, m.tmpfs_mode, m.tmpfs_exec),
            (Some(1 << 20), Some(0o700), true)
        );
        assert!(parse_tmpfs_flag("/t").unwrap().tmpfs_size.is_none());
        assert!(parse_tmpfs_flag("/t:uid=5").is_err());
        assert!(parse_tmpfs_flag("t").is_err());
    }

    #[test]
    fn targets_are_unique_across_flags() {
        let e = parse_all(&["a1:/d".into()], &[], &["/d/".into()]).unwrap_err();
        assert!(e.contains("duplicate mount point: /d"), "{e}");
        let all = parse_all(
            &["a1:/d".into()],
            &["type=tmpfs,dst=/t".into()],
            &["/u".into()],
        )
        .unwrap();
        assert_eq!(all.len(), 3);
    }

    #[test]
    fn nothing_inside_volumes_or_binds_but_inside_tmpfs_is_fine() {
        let e = parse_all(&["v1:/data".into(), "v2:/data/sub".into()], &[], &[]).unwrap_err();
        assert!(e.contains("inside the volume at /data"), "{e}");
        let e = parse_all(&["/srv:/w".into()], &[], &["/w/t".into()]).unwrap_err();
        assert!(e.contains("inside the bind mount at /w"), "{e}");
        assert!(parse_all(&["v1:/run/x".into()], &[], &["/run".into()]).is_ok());
        assert!(parse_all(&["v1:/data".into(), "v2:/database".into()], &[], &[]).is_ok());
    }

    #[test]
    fn names() {
        assert!(valid_name("data") && valid_name("my_vol.1-x"));
        assert!(!valid_name("a") && !valid_name("-x") && !valid_name("a/b") && !valid_name(""));
    }
}
