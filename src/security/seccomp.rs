//! Seccomp profiles in Docker's JSON format, compiled to a BPF program with libseccomp
//! (the library runc, crun and podman use, so a profile means here what it means
//! there: syscall names resolved per architecture, 32-bit sub-architectures, argument
//! comparisons, per-rule errno).

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SeccompError {
    #[error("the seccomp profile is not valid JSON")]
    Json(#[source] serde_json::Error),
    #[error("seccomp profile: {0}")]
    Invalid(String),
    #[error("compiling the seccomp profile")]
    Compile(#[source] libseccomp::error::SeccompError),
    #[error("compiling the seccomp profile")]
    Io(#[source] std::io::Error),
}

/// A profile (`docker run --security-opt seccomp=PROFILE.json`).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub default_action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    /// The older form: every architecture to include.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arch_map: Vec<ArchMap>,
    #[serde(default)]
    pub syscalls: Vec<Rule>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    pub architecture: String,
    #[serde(default)]
    pub sub_architectures: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default)]
    pub names: Vec<String>,
    /// The older form: one name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Arg>,
    #[serde(default)]
    pub includes: Filter,
    #[serde(default)]
    pub excludes: Filter,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: String,
}

/// When a rule applies: architectures (Docker's names: amd64, x86, arm64…),
/// capabilities of the container's bounding set, a minimum kernel version.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caps: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arches: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_kernel: Option<String>,
}

/// x86-64 with its 32-bit and x32 sub-architectures, as Docker maps them.
pub fn x86_arch_map() -> Vec<ArchMap> {
    vec![ArchMap {
        architecture: "SCMP_ARCH_X86_64".into(),
        sub_architectures: Some(vec!["SCMP_ARCH_X86".into(), "SCMP_ARCH_X32".into()]),
    }]
}

/// Parse a profile's text and check what can be checked without compiling.
pub fn parse(text: &str) -> Result<Profile, SeccompError> {
    let p: Profile = serde_json::from_str(text).map_err(SeccompError::Json)?;
    action(&p.default_action, p.default_errno_ret)?;
    for r in &p.syscalls {
        action(&r.action, r.errno_ret)?;
        for a in &r.args {
            op(a)?;
            if a.index > 5 {
                return Err(SeccompError::Invalid(format!(
                    "argument index {} is out of range (0-5)",
                    a.index
                )));
            }
        }
    }
    Ok(p)
}

fn action(name: &str, errno: Option<u32>) -> Result<ScmpAction, SeccompError> {
    Ok(match name {
        "SCMP_ACT_ALLOW" => ScmpAction::Allow,
        "SCMP_ACT_ERRNO" => ScmpAction::Errno(errno.unwrap_or(libc::EPERM as u32) as i32),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => ScmpAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => ScmpAction::KillProcess,
        "SCMP_ACT_TRAP" => ScmpAction::Trap,
        "SCMP_ACT_TRACE" => ScmpAction::Trace(errno.unwrap_or(libc::EPERM as u32) as u16),
        "SCMP_ACT_LOG" => ScmpAction::Log,
        other => {
            return Err(SeccompError::Invalid(format!(
                "unsupported action {other:?}"
            )))
        }
    })
}

fn op(a: &Arg) -> Result<ScmpArgCompare, SeccompError> {
    let o = match a.op.as_str() {
        "SCMP_CMP_NE" => ScmpCompareOp::NotEqual,
        "SCMP_CMP_LT" => ScmpCompareOp::Less,
        "SCMP_CMP_LE" => ScmpCompareOp::LessOrEqual,
        "SCMP_CMP_EQ" => ScmpCompareOp::Equal,
        "SCMP_CMP_GE" => ScmpCompareOp::GreaterEqual,
        "SCMP_CMP_GT" => ScmpCompareOp::Greater,
        "SCMP_CMP_MASKED_EQ" => {
            return Ok(ScmpArgCompare::new(
                a.index,
                ScmpCompareOp::MaskedEqual(a.value),
                a.value_two,
            ))
        }
        other => {
            return Err(SeccompError::Invalid(format!(
                "unsupported comparison {other:?}"
            )))
        }
    };
    Ok(ScmpArgCompare::new(a.index, o, a.value))
}

fn arch(name: &str) -> Result<ScmpArch, SeccompError> {
    let short = name.strip_prefix("SCMP_ARCH_").unwrap_or(name);
    short
        .parse::<ScmpArch>()
        .or_else(|_| format!("SCMP_ARCH_{short}").parse::<ScmpArch>())
        .map_err(|_| SeccompError::Invalid(format!("unknown architecture {name:?}")))
}

/// Docker's name of the architecture we run on.
const NATIVE: &str = "amd64";
const NATIVE_SCMP: &str = "SCMP_ARCH_X86_64";

fn kernel_version() -> (u32, u32) {
    let r = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    parse_version(&r)
}

fn parse_version(s: &str) -> (u32, u32) {
    let mut it = s
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// Whether `r` applies to a container with bounding set `caps` (Docker's rules:
/// an exclusion wins if any listed capability is held; an inclusion needs them all).
fn applies(r: &Rule, caps: &[&str], kernel: (u32, u32)) -> bool {
    let has = |c: &String| caps.contains(&c.as_str());
    let at_least = |v: &String| kernel >= parse_version(v);
    if r.excludes.arches.iter().any(|a| a == NATIVE)
        || r.excludes.caps.iter().any(has)
        || r.excludes.min_kernel.as_ref().is_some_and(at_least)
    {
        return false;
    }
    if !r.includes.arches.is_empty() && !r.includes.arches.iter().any(|a| a == NATIVE) {
        return false;
    }
    r.includes.caps.iter().all(has) && r.includes.min_kernel.as_ref().is_none_or(at_least)
}

/// Compile `profile` for a container whose bounding set is `caps` into a seccomp-BPF
/// program (`struct sock_filter` array). Syscall names this architecture lacks are
/// skipped, as Docker does.
pub fn compile(profile: &Profile, caps: u64) -> Result<Vec<u8>, SeccompError> {
    let cerr = SeccompError::Compile;
    let default = action(&profile.default_action, profile.default_errno_ret)?;
    let mut ctx = ScmpFilterContext::new(default).map_err(cerr)?;
    let mut arches: Vec<String> = profile.architectures.clone();
    for m in &profile.arch_map {
        if m.architecture == NATIVE_SCMP {
            arches.extend(m.sub_architectures.clone().unwrap_or_default());
        }
    }
    for a in arches {
        let a = arch(&a)?;
        if a != ScmpArch::X8664 {
            ctx.add_arch(a).map_err(cerr)?;
        }
    }
    let names = crate::init::caps::names(caps);
    let kernel = kernel_version();
    for r in profile
        .syscalls
        .iter()
        .filter(|r| applies(r, &names, kernel))
    {
        let act = action(&r.action, r.errno_ret.or(profile.default_errno_ret))?;
        if act == default {
            continue;
        }
        let conds: Vec<ScmpArgCompare> = r.args.iter().map(op).collect::<Result<_, _>>()?;
        let mut indexes: Vec<u32> = r.args.iter().map(|a| a.index).collect();
        indexes.sort();
        indexes.dedup();
        for name in r.names.iter().chain(r.name.iter()) {
            let Ok(sc) = ScmpSyscall::from_name(name) else {
                continue; // not a syscall of this architecture
            };
            if conds.is_empty() {
                ctx.add_rule(act, sc).map_err(cerr)?;
            } else if indexes.len() == conds.len() {
                ctx.add_rule_conditional(act, sc, &conds).map_err(cerr)?;
            } else {
                // Several conditions on one argument: libseccomp cannot AND them, so
                // each becomes a rule of its own (as runc does).
                for c in &conds {
                    ctx.add_rule_conditional(act, sc, std::slice::from_ref(c))
                        .map_err(cerr)?;
                }
            }
        }
    }
    let mut f = tempfile::tempfile().map_err(SeccompError::Io)?;
    ctx.export_bpf(&f).map_err(cerr)?;
    f.rewind().map_err(SeccompError::Io)?;
    let mut prog = Vec::new();
    f.read_to_end(&mut prog).map_err(SeccompError::Io)?;
    Ok(prog)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_profile_compiles_and_round_trips_as_json() {
        let p = super::super::docker_profile::profile();
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(parse(&text).unwrap(), p);
        let prog = compile(&p, crate::init::caps::default_mask()).unwrap();
        assert!(!prog.is_empty() && prog.len().is_multiple_of(8));
        // More capabilities, more rules.
        let all = compile(&p, crate::init::caps::all_mask(40)).unwrap();
        assert_ne!(prog, all);
    }

    #[test]
    fn rule_conditions_follow_docker() {
        let admin = ["CAP_SYS_ADMIN"];
        let none: [&str; 0] = [];
        let with = Rule {
            includes: Filter {
                caps: vec!["CAP_SYS_ADMIN".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(applies(&with, &admin, (6, 1)));
        assert!(!applies(&with, &none, (6, 1)));
        let without = Rule {
            excludes: with.includes.clone(),
            ..Default::default()
        };
        assert!(!applies(&without, &admin, (6, 1)));
        let arm = Rule {
            includes: Filter {
                arches: vec!["arm64".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(!applies(&arm, &none, (6, 1)));
        let newer = Rule {
            includes: Filter {
                min_kernel: Some("4.8".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(applies(&newer, &none, (6, 1)));
        assert!(!applies(&newer, &none, (4, 4)));
        assert_eq!(parse_version("6.18.44-fc-v669"), (6, 18));
    }

    #[test]
    fn bad_profiles_are_refused() {
        assert!(parse("{").is_err());
        assert!(parse(r#"{"defaultAction":"SCMP_ACT_NOPE"}"#).is_err());
        assert!(parse(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":9,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#).is_err());
        assert!(parse(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":1,"op":"SCMP_CMP_SORTA"}]}]}"#).is_err());
        let p = parse(r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],"syscalls":[{"names":["mkdir","no_such_call"],"action":"SCMP_ACT_ERRNO"}]}"#).unwrap();
        assert!(compile(&p, 0).is_ok());
    }
}
