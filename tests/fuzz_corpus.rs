//! The cargo-fuzz targets' properties on the stable toolchain, so CI checks them on
//! every run (the fuzzers themselves need nightly; see fuzz/README.md): every seed of
//! `fuzz/corpus/`, and a fixed set of mutants of each — bytes flipped, cut, and tar
//! header fields rewritten with their checksums fixed, so mutants get past the
//! checksum into the unpacker's and loader's own checks.
//!
//! - unpack_layer: unpacking succeeds or fails, never panics, never writes outside
//!   the destination;
//! - load_archive: a refused archive leaves no blob and no temp file in the store.

use std::path::{Path, PathBuf};

const MUTANTS_PER_SEED: usize = 400;

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no seeds in {}", dir.display());
    v
}

/// xorshift64*: the same mutants on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Offsets of blocks that look like tar headers (a "ustar" magic at 257).
fn headers(data: &[u8]) -> Vec<usize> {
    (0..data.len() / 512)
        .map(|i| i * 512)
        .filter(|&o| data.len() >= o + 512 && &data[o + 257..o + 262] == b"ustar")
        .collect()
}

fn fix_checksum(block: &mut [u8]) {
    block[148..156].fill(b' ');
    let sum: u32 = block[..512].iter().map(|&b| b as u32).sum();
    let s = format!("{sum:06o}\0 ");
    block[148..156].copy_from_slice(s.as_bytes());
}

const NASTY_NAMES: &[&[u8]] = &[
    b"../../escape",
    b"/abs/path",
    b"a/../../b",
    b"./.wh..wh..opq",
    b".wh.etc",
    b"link",
    b"dir/",
    b"",
];

fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut d = seed.to_vec();
    let hs = headers(&d);
    for _ in 0..1 + rng.below(3) {
        match rng.below(6) {
            // a byte anywhere
            0 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] ^= 1 << rng.below(8);
            }
            // cut the tail
            1 if !d.is_empty() => {
                let n = rng.below(d.len());
                d.truncate(n);
            }
            // a header field rewritten, checksum fixed
            2..=5 if !hs.is_empty() => {
                let o = hs[rng.below(hs.len())];
                if o + 512 > d.len() {
                    continue;
                }
                let b = &mut d[o..o + 512];
                match rng.below(5) {
                    // name
                    0 => {
                        let n = NASTY_NAMES[rng.below(NASTY_NAMES.len())];
                        b[..100].fill(0);
                        b[..n.len()].copy_from_slice(n);
                    }
                    // link target
                    1 => {
                        let n = NASTY_NAMES[rng.below(NASTY_NAMES.len())];
                        b[157..257].fill(0);
                        b[157..157 + n.len()].copy_from_slice(n);
                    }
                    // type: regular, hard link, symlink, char, block, dir, fifo, pax, gnu long
                    2 => b[156] = b"0123456xLK"[rng.below(10)],
                    // size
                    3 => {
                        let s = format!("{:011o}\0", rng.below(4096));
                        b[124..136].copy_from_slice(s.as_bytes());
                    }
                    // mode
                    _ => {
                        let s = format!("{:07o}\0", rng.next() & 0o7777);
                        b[100..108].copy_from_slice(s.as_bytes());
                    }
                }
                fix_checksum(b);
            }
            _ => {}
        }
    }
    d
}

/// Every seed of `target` and `MUTANTS_PER_SEED` mutants of each by `mutator`.
fn cases_by(
    target: &str,
    rng_seed: u64,
    mutator: fn(&[u8], &mut Rng) -> Vec<u8>,
) -> Vec<(String, Vec<u8>)> {
    let mut rng = Rng(rng_seed);
    let mut out = Vec::new();
    for (name, seed) in seeds(target) {
        for i in 0..MUTANTS_PER_SEED {
            out.push((format!("{name} mutant {i}"), mutator(&seed, &mut rng)));
        }
        out.push((name, seed));
    }
    out
}

fn cases(target: &str) -> Vec<(String, Vec<u8>)> {
    cases_by(target, 0x7b1d_5eed_0000_0001, mutate)
}

fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

#[test]
fn unpack_layer_never_writes_outside_its_root() {
    let mut unpacked = 0;
    let all = cases("unpack_layer");
    for (name, data) in &all {
        let outer = tempfile::tempdir().unwrap();
        let dest = outer.path().join("root");
        std::fs::create_dir(&dest).unwrap();
        if twinbox::image::unpack::unpack_layer(&data[..], &dest).is_ok() {
            unpacked += 1;
        }
        assert_eq!(
            listing(outer.path()),
            vec![dest.clone()],
            "{name}: an entry escaped"
        );
    }
    // The mutants must reach the unpacker, not all die at the tar checksum.
    assert!(unpacked > 0, "no case unpacked: the mutator is too blunt");
    println!("{} cases, {unpacked} unpacked, none escaped", all.len());
}

#[test]
fn a_refused_archive_leaves_nothing_in_the_store() {
    let mut loaded = 0;
    let all = cases("load_archive");
    for (name, data) in &all {
        let d = tempfile::tempdir().unwrap();
        let store = twinbox::image::Store::open(d.path()).unwrap();
        match twinbox::image::archive::load(&store, &data[..]) {
            Ok(_) => loaded += 1,
            Err(_) => {
                let blobs = d.path().join("images/blobs/sha256");
                assert!(listing(&blobs).is_empty(), "{name}: refused, blobs left");
            }
        }
        assert!(
            listing(&d.path().join("images/tmp")).is_empty(),
            "{name}: temp files left"
        );
    }
    assert!(
        loaded > 0,
        "no case loaded: the seeds or the mutator are broken"
    );
    println!("{} cases, {loaded} loaded", all.len());
}

/// Values that break bounds: zero, one, all ones, sign bits, just past guest RAM.
const EDGE: &[u64] = &[
    0,
    1,
    2,
    0xff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    0x1_0000_0000,
    0xffff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    0xfff0,
    0x1_0000,
    0x3000,
    0x2ff0,
];

/// Mutants of a guest-memory or packet seed: fields of 2, 4 or 8 bytes rewritten with
/// edge values or random ones (aligned, where descriptors and ring entries live),
/// bytes flipped, tails cut, a chunk repeated.
fn mutate_fields(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut d = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(5) {
            0..=1 if !d.is_empty() => {
                let w = [2usize, 4, 8][rng.below(3)];
                // Offsets as the harness sees them: byte 0 is the queue size.
                let at = 1 + rng.below(d.len() / w + 1) * w;
                let v = if rng.below(2) == 0 {
                    EDGE[rng.below(EDGE.len())]
                } else {
                    rng.next()
                };
                if d.len() < at + w {
                    d.resize(at + w, 0);
                }
                d[at..at + w].copy_from_slice(&v.to_le_bytes()[..w]);
            }
            2 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] ^= 1 << rng.below(8);
            }
            3 if !d.is_empty() => {
                let n = rng.below(d.len());
                d.truncate(n);
            }
            4 if d.len() > 8 => {
                let a = rng.below(d.len());
                let b = (a + 1 + rng.below(64)).min(d.len());
                let chunk = d[a..b].to_vec();
                let at = rng.below(d.len());
                d.splice(at..at, chunk);
            }
            _ => {}
        }
    }
    d
}

fn field_cases(target: &str) -> Vec<(String, Vec<u8>)> {
    cases_by(target, 0x7b1d_5eed_0000_0002, mutate_fields)
}

/// Every case of `target` through `f`; a panic names the case (its bytes are printed
/// in hex, to be added to the corpus).
fn run_guest_target(target: &str, f: fn(&[u8])) {
    let all = field_cases(target);
    let trace = std::env::var_os("TB_FUZZ_TRACE").is_some();
    // A case that never returns is a finding too (a guest spinning the device thread):
    // a watchdog names it and ends the test run.
    let at = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let (at, done) = (at.clone(), done.clone());
        let names: Vec<String> = all.iter().map(|c| c.0.clone()).collect();
        let target = target.to_string();
        std::thread::spawn(move || {
            let mut last = usize::MAX;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_secs(20));
                let now = at.load(std::sync::atomic::Ordering::SeqCst);
                if now == last && !done.load(std::sync::atomic::Ordering::SeqCst) {
                    eprintln!("{target}: {} has not returned in 20 s (a hang)", names[now]);
                    std::process::abort();
                }
                last = now;
            }
        });
    }
    for (i, (name, data)) in all.iter().enumerate() {
        at.store(i, std::sync::atomic::Ordering::SeqCst);
        if trace {
            eprintln!("{target}: {name}");
            if let Some(d) = std::env::var_os("TB_FUZZ_DUMP") {
                std::fs::write(std::path::Path::new(&d).join(name.replace(' ', "_")), data)
                    .unwrap();
            }
        }
        if let Err(e) = std::panic::catch_unwind(|| f(data)) {
            let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
            panic!("{target}: {name} panicked: {e:?}\ninput: {hex}");
        }
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    println!("{target}: {} cases, none panicked or hung", all.len());
}

#[test]
fn virtio_blk_chains_stay_inside_the_disk() {
    run_guest_target(
        "virtio_blk",
        twinbox::vmm::devices::virtio::fuzz::virtio_blk,
    );
}

#[test]
fn virtio_net_chains_never_panic_or_oversize() {
    run_guest_target(
        "virtio_net",
        twinbox::vmm::devices::virtio::fuzz::virtio_net,
    );
}

#[test]
fn virtio_vsock_chains_never_panic() {
    run_guest_target(
        "virtio_vsock",
        twinbox::vmm::devices::virtio::fuzz::virtio_vsock,
    );
}

#[test]
fn vsock_muxer_takes_any_packet_sequence() {
    run_guest_target(
        "vsock_muxer",
        twinbox::vmm::devices::virtio::fuzz::vsock_muxer,
    );
}

#[test]
fn agent_frames_parse_or_fail_cleanly() {
    run_guest_target("agent_frames", twinbox::guest::protocol::fuzz_frames);
}
