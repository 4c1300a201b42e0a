//! Which devices a container may open or create, as Docker allows them: mknod of
//! anything, read/write of the standard nodes (null, zero, full, random, urandom, tty,
//! console, ptmx, the pseudo-terminals, tun) and nothing else. cgroup v1 takes these as
//! rules in `devices.allow`; cgroup v2 needs an eBPF program of type
//! `BPF_PROG_TYPE_CGROUP_DEVICE` attached to the container's cgroup, assembled here.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// One allowed (type, major, minor, access) tuple; None is a wildcard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    /// 'c' or 'b'.
    pub kind: char,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// "rwm" letters.
    pub access: &'static str,
}

const fn r(kind: char, major: Option<u32>, minor: Option<u32>, access: &'static str) -> DeviceRule {
    DeviceRule {
        kind,
        major,
        minor,
        access,
    }
}

/// Docker's default device rules.
pub const DEFAULT: &[DeviceRule] = &[
    r('c', None, None, "m"),
    r('b', None, None, "m"),
    r('c', Some(1), Some(3), "rwm"),
    r('c', Some(1), Some(5), "rwm"),
    r('c', Some(1), Some(7), "rwm"),
    r('c', Some(1), Some(8), "rwm"),
    r('c', Some(1), Some(9), "rwm"),
    r('c', Some(5), Some(0), "rwm"),
    r('c', Some(5), Some(1), "rwm"),
    r('c', Some(5), Some(2), "rwm"),
    r('c', Some(136), None, "rwm"),
    r('c', Some(10), Some(200), "rwm"),
];

impl DeviceRule {
    /// The cgroup v1 `devices.allow` line.
    pub fn v1_line(&self) -> String {
        let n = |v: Option<u32>| v.map(|x| x.to_string()).unwrap_or_else(|| "*".into());
        format!(
            "{} {}:{} {}",
            self.kind,
            n(self.major),
            n(self.minor),
            self.access
        )
    }

    fn access_mask(&self) -> i32 {
        // BPF_DEVCG_ACC_MKNOD 1, READ 2, WRITE 4
        self.access.chars().fold(0, |m, c| {
            m | match c {
                'm' => 1,
                'r' => 2,
                'w' => 4,
                _ => 0,
            }
        })
    }
}

/// One eBPF instruction.
#[derive(Clone, Copy)]
#[repr(C)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const AND_K: u8 = 0x57; // BPF_ALU64 | BPF_AND | BPF_K
const RSH_K: u8 = 0x77; // BPF_ALU64 | BPF_RSH | BPF_K
const MOV_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

/// The program: r2 = type, r3 = access, r4 = major, r5 = minor (from the
/// `bpf_cgroup_dev_ctx` in r1); each rule is a block that returns 1 if it matches and
/// jumps to the next block otherwise; the end returns 0 (denied).
fn assemble(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(MOV_X, 3, 2, 0, 0),
        insn(AND_K, 2, 0, 0, 0xffff),
        insn(RSH_K, 3, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ];
    for rule in rules {
        let mut block = Vec::new();
        let kind = if rule.kind == 'b' { 1 } else { 2 };
        block.push(insn(JNE_K, 2, 0, 0, kind)); // offset patched below
                                                // access asked for beyond what the rule grants: no match
        block.push(insn(MOV_X, 6, 3, 0, 0));
        block.push(insn(AND_K, 6, 0, 0, !rule.access_mask()));
        block.push(insn(JNE_K, 6, 0, 0, 0));
        if let Some(m) = rule.major {
            block.push(insn(JNE_K, 4, 0, 0, m as i32));
        }
        if let Some(m) = rule.minor {
            block.push(insn(JNE_K, 5, 0, 0, m as i32));
        }
        block.push(insn(MOV_K, 0, 0, 0, 1));
        block.push(insn(EXIT, 0, 0, 0, 0));
        // Each conditional jump skips to the end of this block.
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == JNE_K {
                ins.off = (len - i - 1) as i16;
            }
        }
        p.extend(block);
    }
    p.push(insn(MOV_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

fn bpf(cmd: libc::c_int, attr: &[u64; 16]) -> io::Result<i64> {
    // SAFETY: attr is a zero-padded bpf_attr of 128 bytes that outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_ptr(),
            std::mem::size_of_val(attr),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Load the program for `rules` and attach it to the cgroup directory `cgroup`.
pub fn attach(cgroup: &std::path::Path, rules: &[DeviceRule]) -> io::Result<()> {
    const BPF_PROG_LOAD: libc::c_int = 5;
    const BPF_PROG_ATTACH: libc::c_int = 8;
    const BPF_PROG_TYPE_CGROUP_DEVICE: u64 = 15;
    const BPF_CGROUP_DEVICE: u64 = 6;
    let prog = assemble(rules);
    let license = c"Apache-2.0";
    let mut attr = [0u64; 16];
    // prog_type (u32) | insn_cnt (u32), insns, license
    attr[0] = BPF_PROG_TYPE_CGROUP_DEVICE | ((prog.len() as u64) << 32);
    attr[1] = prog.as_ptr() as u64;
    attr[2] = license.as_ptr() as u64;
    let fd = bpf(BPF_PROG_LOAD, &attr)?;
    // SAFETY: the kernel just returned this descriptor to us.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let dir = std::fs::File::open(cgroup)?;
    let mut attr = [0u64; 16];
    // target_fd (u32) | attach_bpf_fd (u32), attach_type (u32) | attach_flags (u32)
    attr[0] = dir.as_raw_fd() as u64 | ((prog_fd.as_raw_fd() as u64) << 32);
    attr[1] = BPF_CGROUP_DEVICE;
    bpf(BPF_PROG_ATTACH, &attr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_lines_match_docker() {
        let lines: Vec<String> = DEFAULT.iter().map(|r| r.v1_line()).collect();
        assert_eq!(lines[0], "c *:* m");
        assert!(lines.contains(&"c 1:3 rwm".to_string()));
        assert!(lines.contains(&"c 136:* rwm".to_string()));
    }

    /// Run the assembled program on a context, as the kernel would (the few opcodes
    /// it uses), so its logic is tested without root.
    fn eval(p: &[Insn], kind: u32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [kind | (access << 16), major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            match i.code {
                LDX_W => r[dst] = ctx[(i.off / 4) as usize] as u64,
                MOV_X => r[dst] = r[src],
                MOV_K => r[dst] = i.imm as i64 as u64,
                AND_K => r[dst] &= i.imm as i64 as u64,
                RSH_K => r[dst] >>= i.imm,
                JNE_K => {
                    if r[dst] != i.imm as i64 as u64 {
                        pc += i.off as usize;
                    }
                }
                EXIT => return r[0],
                _ => panic!("opcode {:#x}", i.code),
            }
            pc += 1;
        }
    }

    #[test]
    fn program_allows_what_docker_allows() {
        let p = assemble(DEFAULT);
        let (chr, blk) = (2, 1);
        let (m, rd, wr) = (1, 2, 4);
        assert_eq!(eval(&p, chr, rd | wr, 1, 3), 1, "/dev/null");
        assert_eq!(eval(&p, chr, rd | wr, 136, 7), 1, "a pty");
        assert_eq!(eval(&p, chr, m, 8, 0), 1, "mknod of anything");
        assert_eq!(eval(&p, blk, m, 8, 0), 1);
        assert_eq!(eval(&p, blk, rd, 8, 0), 0, "reading a host disk");
        assert_eq!(eval(&p, chr, rd, 1, 1), 0, "/dev/mem");
        assert_eq!(eval(&p, chr, rd | m, 1, 1), 0);
        assert_eq!(eval(&p, chr, wr, 10, 237), 0, "loop-control");
    }
}
