//! `cp` as tar streams, with Docker's rules, on every side of the boundary: the host,
//! a helper inside a process container, and the guest agent of a microVM.
//!
//! The sender packs the source with its basename as the top entry (`SRC/.` sends the
//! contents of SRC under a top entry `.`). The receiver: if the destination is an
//! existing directory, the entry lands inside it; otherwise the top entry is renamed
//! to the destination's name in its parent directory.
//!
//! Paths are never resolved by name alone: each side anchors them at an open directory
//! (see [`Side`] and `util::at`), so a container that swaps a component for a symlink
//! mid-copy — to `/proc/PID/root` of a process that has not entered its mount namespace
//! yet, say — cannot steer the copy out of its root.

// Guest- and archive-controlled numbers flow through here: every narrowing or
// sign-changing cast must be checked (try_from) or say why it cannot lose.
#![cfg_attr(
    not(test),
    deny(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_possible_wrap,
        clippy::cast_lossless
    )
)]

mod guard;
mod pack;
mod unpack;

pub use pack::pack;
pub use unpack::extract;

use std::path::{Component, Path, PathBuf};

/// Where a `pack` or `extract` runs, and so how it resolves paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Inside a container (a helper that entered its mount namespace, or the guest
    /// agent): paths are resolved in the current root, symlinks are followed but never
    /// out of it, magic links are refused.
    Container,
    /// On the host, with the user's own paths: those resolve as usual, but the entries
    /// of a received archive never go through a symlink, and get no setuid/setgid bits
    /// and no device nodes (the archive comes from a container).
    Host,
}

/// Deepest directory tree `cp` walks or writes (and an image layer may hold): paths
/// deeper than this outgrow PATH_MAX in practice and only serve to slow lookups down.
pub const MAX_DEPTH: usize = 256;

/// Clean a tar path: relative, no `..`, no root. Returns None if it would escape.
pub fn safe_relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// The top entry `pack` gives `src`: its last component, or `.` for `SRC/.` (what a
/// receiver checks a stream from a container against).
pub fn top_name(src: &str) -> Option<String> {
    if contents_only(src) {
        return Some(".".into());
    }
    Path::new(src)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

/// `cp SRC/.`: the contents of SRC, not SRC itself (Docker's rule).
fn contents_only(p: &str) -> bool {
    p == "." || p == "/" || p.ends_with("/.") || p.ends_with("/./")
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, msg)
}

/// A tar with raw names and link targets, as a hostile sender would write one (tar's
/// builder refuses `..`), every entry with mode `mode` (tests of both unpackers).
#[cfg(test)]
pub(crate) fn raw_tar(
    entries: &[(&str, tar::EntryType, &[u8], Option<&str>)],
    mode: u32,
) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, data, link) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        let gnu = h.as_gnu_mut().expect("a GNU header");
        gnu.name[..path.len()].copy_from_slice(path.as_bytes());
        if let Some(l) = link {
            gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        b.append(&h, *data).expect("append to a Vec");
    }
    b.into_inner().expect("a Vec")
}
