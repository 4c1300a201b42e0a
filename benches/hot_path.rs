//! Hot-path micro-benchmarks (`cargo bench`): the pieces every container start pays for.
//! Benches that need root or a usable /dev/kvm say so and are left out when they
//! cannot run.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::hint::black_box;
use std::path::Path;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn record(id: &str) -> twinbox::state::ContainerRecord {
    serde_json::from_value(serde_json::json!({
        "id": id, "name": format!("n{id}"), "created": "2026-01-01T00:00:00Z",
        "image": "busybox", "image_id": "sha256:x", "layers": [], "entrypoint": [],
        "cmd": ["true"], "user": "", "spec": twinbox::spec::SandboxSpec::default(),
        "auto_remove": false, "restart_count": 0,
        "state": {"status": "created", "pid": 0, "monitor_pid": 0, "monitor_start": 0,
                  "exit_code": null, "oom_killed": false, "error": "",
                  "started_at": null, "finished_at": null}
    }))
    .expect("record")
}

fn state_store(c: &mut Criterion) {
    let d = tempfile::tempdir().unwrap();
    let s = twinbox::state::Store::open(d.path()).unwrap();
    s.insert(&record("bench1")).unwrap();
    c.bench_function("state store: durable record update (fdatasync)", |b| {
        b.iter(|| s.update("bench1", |r| r.restart_count += 1).unwrap())
    });
    c.bench_function("state store: volatile status update", |b| {
        b.iter(|| {
            s.update_volatile("bench1", |r| r.restart_count += 1)
                .unwrap()
        })
    });
}

fn busybox_store(dir: &Path) -> (twinbox::image::Store, twinbox::image::Image) {
    let s = twinbox::image::Store::open(dir).unwrap();
    let img = s
        .find_or_builtin("busybox")
        .expect("busybox-static at /bin/busybox");
    (s, img)
}

fn layers(c: &mut Criterion) {
    let d = tempfile::tempdir().unwrap();
    let (store, img) = busybox_store(d.path());
    let blob = store.blob_path(img.manifest.layers()[0].digest().as_ref());
    let data = std::fs::read(blob).unwrap();
    c.bench_function("layer unpack: built-in busybox (gzip tar)", |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |dest| {
                let r = flate2::read::GzDecoder::new(&data[..]);
                black_box(twinbox::image::unpack::unpack_layer(r, dest.path()).unwrap());
                dest
            },
            BatchSize::PerIteration,
        )
    });
}

fn virtqueue(c: &mut Criterion) {
    c.bench_function("virtqueue: 64 virtio-blk 4 KiB reads", |b| {
        b.iter_batched(
            || twinbox::vmm::bench_support::blk_reads(64),
            |mut setup| black_box(setup.run()),
            BatchSize::SmallInput,
        )
    });
}

fn clone_to_exec(c: &mut Criterion) {
    if !is_root() {
        eprintln!("clone-to-exec, overlay set-up: skipped (need root)");
        return;
    }
    c.bench_function("clone (5 new namespaces) to exec /bin/true, waited", |b| {
        b.iter(|| {
            let flags = libc::CLONE_NEWNS
                | libc::CLONE_NEWUTS
                | libc::CLONE_NEWIPC
                | libc::CLONE_NEWPID
                | libc::CLONE_NEWNET
                | libc::SIGCHLD;
            // SAFETY: fork-style clone in this single-purpose bench thread; the child
            // only execs or exits.
            let pid = unsafe {
                libc::syscall(
                    libc::SYS_clone,
                    flags as libc::c_ulong,
                    0usize,
                    0usize,
                    0usize,
                    0usize,
                )
            };
            if pid == 0 {
                let path = c"/bin/true";
                let argv = [path.as_ptr(), std::ptr::null()];
                let envp = [std::ptr::null()];
                // SAFETY: valid NUL-terminated strings and NULL-terminated arrays.
                unsafe {
                    libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
                    libc::_exit(127)
                };
            }
            let mut st = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(pid as i32, &mut st, 0) };
        })
    });
    let d = tempfile::tempdir().unwrap();
    let (store, img) = busybox_store(d.path());
    let lower = store.layer_dirs(&img).unwrap().remove(0);
    c.bench_function("overlay root set-up in a new mount namespace", |b| {
        b.iter_batched(
            || {
                let t = tempfile::tempdir().unwrap();
                for s in ["upper", "work", "root"] {
                    std::fs::create_dir(t.path().join(s)).unwrap();
                }
                t
            },
            |t| {
                let opts = format!(
                    "lowerdir={},upperdir={},workdir={}",
                    lower.display(),
                    t.path().join("upper").display(),
                    t.path().join("work").display()
                );
                let target = t.path().join("root");
                // SAFETY: fork; the child unshares, mounts and exits.
                let pid = unsafe { libc::fork() };
                if pid == 0 {
                    let ok = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).is_ok()
                        && nix::mount::mount(
                            None::<&str>,
                            "/",
                            None::<&str>,
                            nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
                            None::<&str>,
                        )
                        .is_ok()
                        && nix::mount::mount(
                            Some("overlay"),
                            &target,
                            Some("overlay"),
                            nix::mount::MsFlags::empty(),
                            Some(opts.as_str()),
                        )
                        .is_ok();
                    // SAFETY: leave the child without running destructors.
                    unsafe { libc::_exit(if ok { 0 } else { 1 }) };
                }
                let mut st = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(pid, &mut st, 0) };
                assert_eq!(st, 0, "overlay mount failed");
                t
            },
            BatchSize::PerIteration,
        )
    });
}

fn vm_create(c: &mut Criterion) {
    let kernel = twinbox::lab::guest_kernel(&twinbox::lab::default_cache());
    let Some(kernel) = kernel.filter(|_| Path::new("/dev/kvm").exists() && is_root()) else {
        eprintln!(
            "VM create-to-first-KVM_RUN: skipped (needs root, /dev/kvm and the guest kernel)"
        );
        return;
    };
    let mut group = c.benchmark_group("vmm");
    group.sample_size(20);
    group.bench_function("VM create to first KVM_RUN (256 MiB, 1 vCPU)", |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                let vm = twinbox::vmm::Vm::start(twinbox::vmm::VmConfig {
                    kernel: kernel.clone(),
                    initrd: None,
                    cmdline: String::new(),
                    mem_bytes: 256 << 20,
                    vcpus: 1,
                    disks: vec![],
                    shares: vec![],
                    net: None,
                    vsock: None,
                    console: Box::new(std::io::sink()),
                    quiet: true,
                    trace: None,
                    before_run: None,
                    kvm: None,
                })
                .unwrap();
                total += vm.boot.setup();
                vm.power_off();
            }
            total
        })
    });
    // The same VM built by a jailed VMM process (what a container gets): the extra
    // cost is the process start, the filters' compilation and the jail.
    let dir = tempfile::tempdir().unwrap();
    group.bench_function(
        "jailed VMM process: spawn to first KVM_RUN (256 MiB, 1 vCPU)",
        |b| {
            b.iter_custom(|iters| {
                let mut total = std::time::Duration::ZERO;
                for _ in 0..iters {
                    let id = twinbox::vmm::jail::JailId::allocate(&dir.path().join("ids"), "bench")
                        .unwrap();
                    let jail = dir.path().join("jail");
                    twinbox::vmm::jail::prepare_dir(&jail, id.id).unwrap();
                    let setup = twinbox::vmm::process::Setup {
                        kernel: kernel.clone(),
                        initrd: None,
                        cmdline: String::new(),
                        mem_bytes: 256 << 20,
                        vcpus: 1,
                        disks: vec![],
                        shares: vec![],
                        net_mac: None,
                        vsock_cid: None,
                        quiet: true,
                        jail: twinbox::vmm::jail::JailSpec {
                            dir: jail,
                            uid: id.id,
                            gid: id.id,
                        },
                        cpus: None,
                        parent: 0,
                    };
                    let console = std::fs::File::create("/dev/null").unwrap();
                    let t = std::time::Instant::now();
                    let vm = twinbox::vmm::process::VmProcess::spawn(
                        std::path::Path::new(env!("CARGO_BIN_EXE_twinbox")),
                        setup,
                        id,
                        console,
                        None,
                        Vec::new(),
                        &|_| Ok(()),
                    )
                    .unwrap();
                    total += t.elapsed();
                    vm.stop();
                }
                total
            })
        },
    );
    group.finish();
}

criterion_group!(
    benches,
    state_store,
    layers,
    virtqueue,
    clone_to_exec,
    vm_create
);
criterion_main!(benches);
