//! The vm backend end to end. On a host whose /dev/kvm can run a standard guest these
//! scenarios would run natively; on these machines (PVM, see docs/lab.md §1) they run inside
//! `twinbox lab`, an emulated machine with AMD-V. They need qemu-system-x86_64 and the
//! guest kernel (kernel-config/build.sh), which scripts/setup.sh installs and builds; a
//! missing piece fails the test with a message saying which.

mod common;
use common::foreign::*;
use common::*;

/// One lab boot at a time: each emulated machine takes a whole core.
fn lab_lock() -> twinbox::util::fs::Lock {
    twinbox::util::fs::Lock::exclusive(std::path::Path::new("/tmp/twinbox-lab-tests.lock")).unwrap()
}

/// Run a shell script in the lab; returns (stdout, stderr, exit code).
fn lab(script: &str) -> (String, String, i32) {
    lab_with(script, &[], 2048, 1)
}

/// Run a script in a lab with these host files as read-only disks (/dev/vda, …), this
/// much memory (MiB) and this many CPUs.
fn lab_with(script: &str, disks: &[&std::path::Path], mem: u64, smp: u8) -> (String, String, i32) {
    require_root();
    let _l = lab_lock();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scenario.sh");
    std::fs::write(&path, format!("set -u\n{script}")).unwrap();
    let o = std::process::Command::new(bin())
        .args(["lab", "--timeout", "900", "--mem", &mem.to_string()])
        .args(["--smp", &smp.to_string()])
        .args(
            disks
                .iter()
                .flat_map(|d| [std::ffi::OsStr::new("--disk"), d.as_os_str()]),
        )
        .arg("--script")
        .arg(&path)
        .output()
        .expect("spawn twinbox lab");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !err.contains("was not found") && !err.contains("no guest kernel"),
        "the lab cannot run here: {err}"
    );
    (out, err, o.status.code().unwrap_or(-1))
}

/// The value printed after `key=` on its own line.
fn field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in output:\n{out}"))
}

#[test]
fn vm_runs_its_own_kernel_and_reports_exit_codes() {
    // The chroot escape (tests/escape_tools/chroot.c) carried in as the raw /dev/vda.
    let tools = tempfile::tempdir().unwrap();
    let esc = escape_tool(tools.path(), "chroot");
    let size = std::fs::metadata(&esc).unwrap().len();
    let script = format!("esc_size={size}\n")
        + r#"
head -c "$esc_size" /dev/vda > /tmp/esc && chmod 755 /tmp/esc
twinbox run -d --name esc --isolation vm busybox sh -c 'while [ ! -x /esc ]; do sleep 0.1; done; /esc' >/dev/null
twinbox cp /tmp/esc esc:/esc
twinbox wait esc >/dev/null
echo "chroot_workload=$(twinbox logs esc 2>&1)"
twinbox run -d --name esc2 --isolation vm busybox sleep 300 >/dev/null
twinbox cp /tmp/esc esc2:/esc
echo "chroot_exec=$(twinbox exec esc2 /esc 2>&1)"
twinbox rm -f esc esc2 >/dev/null
echo "l1kernel=$(uname -r)"
echo "guestkernel=$(twinbox run --rm --isolation vm busybox uname -r)"
twinbox run --rm --isolation vm busybox sh -c 'exit 7'; echo "exit7=$?"
echo "stdin=$(echo hi | twinbox run -i --rm --isolation vm busybox cat)"
twinbox run --rm --isolation vm busybox nosuchcmd 2>/dev/null; echo "missing=$?"
echo "pid=$(twinbox run --rm --isolation vm busybox sh -c 'echo $$')"
echo "tty=$(twinbox run --rm -t --isolation vm busybox tty | tr -d '\r')"
echo "user=$(twinbox run --rm -u nobody -w /srv -e K=v --isolation vm busybox sh -c 'echo $(id -u) $(pwd) $K')"
echo "host=$(twinbox run --rm -h vmhost --isolation vm busybox hostname)"
echo "out=[$(twinbox run --rm --isolation vm busybox echo only-this)]"
echo "mem=$(twinbox run --rm --memory 128m --cpus 2 --isolation vm busybox sh -c 'grep MemTotal /proc/meminfo | tr -s " " | cut -d" " -f2; nproc' | tr '\n' ' ')"
st='grep -E "^(Seccomp|CapEff|NoNewPrivs):" /proc/self/status | tr -s "\t " " " | tr "\n" " "'
echo "confined=$(twinbox run --rm --isolation vm busybox sh -c "$st")"
echo "unconfined=$(twinbox run --rm --isolation vm --cap-drop ALL --security-opt seccomp=unconfined --security-opt no-new-privileges busybox sh -c "$st")"
echo "userns=$(twinbox run --rm --isolation vm busybox sh -c 'unshare -U true 2>/dev/null; echo $?')"
echo "ro=$(twinbox run --rm --isolation vm --read-only --tmpfs /run busybox sh -c 'touch /x 2>/dev/null; echo $?; touch /run/y && echo ok' | tr '\n' ' ')"
echo "left=$(ls /var/lib/twinbox/containers | wc -l)"
"#;
    let (out, err, code) = lab_with(&script, &[&esc], 2048, 1);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    // The same confinement as a process container, applied by the agent in the guest.
    let caps = format!("{:016x}", twinbox::init::caps::default_mask());
    assert_eq!(
        field(&out, "confined").trim(),
        format!("CapEff: {caps} NoNewPrivs: 0 Seccomp: 2"),
        "{out}"
    );
    assert_eq!(
        field(&out, "unconfined").trim(),
        "CapEff: 0000000000000000 NoNewPrivs: 1 Seccomp: 0",
        "{out}"
    );
    assert_eq!(
        field(&out, "userns"),
        "1",
        "seccomp refuses unshare in the guest too"
    );
    assert_eq!(field(&out, "ro").trim(), "1 ok");
    let guest = field(&out, "guestkernel");
    assert!(!guest.is_empty());
    assert_ne!(guest, field(&out, "l1kernel"), "the VM has its own kernel");
    assert_eq!(field(&out, "exit7"), "7");
    assert_eq!(field(&out, "stdin"), "hi");
    assert_eq!(field(&out, "missing"), "127");
    assert_eq!(
        field(&out, "pid"),
        "1",
        "the workload is PID 1 of its own namespace"
    );
    assert_eq!(field(&out, "tty"), "/dev/pts/0");
    assert_eq!(field(&out, "user"), "65534 /srv v");
    assert_eq!(field(&out, "host"), "vmhost");
    assert_eq!(
        field(&out, "out"),
        "[only-this]",
        "the kernel log must not leak into the workload's output"
    );
    let mem: Vec<u64> = field(&out, "mem")
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(
        mem[0] > 90_000 && mem[0] <= 131_072,
        "guest RAM follows --memory: {mem:?}"
    );
    assert_eq!(mem[1], 2, "--cpus sets the vCPU count");
    assert_eq!(field(&out, "left"), "0", "--rm leaves nothing");
    // The workload is pivoted into its root and the agent's tree detached: a chroot
    // escape (CAP_SYS_CHROOT is a default capability) ends in the container's own root,
    // from the workload and from an exec'd process alike.
    for key in ["chroot_workload", "chroot_exec"] {
        let root = field(&out, key);
        println!("{key}: {root}");
        let names: Vec<&str> = root
            .strip_prefix("root=")
            .unwrap_or_else(|| panic!("{key}: {root}"))
            .split_whitespace()
            .collect();
        assert!(
            names.contains(&"bin") && names.contains(&"esc"),
            "{key}: {root}"
        );
        assert!(
            !names.contains(&"init") && !names.contains(&".twinbox-root"),
            "{key} reached the agent's root: {root}"
        );
    }
}

#[test]
fn vm_lifecycle_like_the_process_backend() {
    let (out, err, code) = lab(r#"
twinbox run -d --name v1 --isolation vm busybox sh -c 'i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done' >/dev/null
n=0; while [ "$(twinbox logs v1 | wc -l)" -lt 3 ] && [ $n -lt 100 ]; do sleep 0.2; n=$((n+1)); done
echo "state=$(twinbox ps --format '{{.Names}}:{{.State}}:{{.Isolation}}')"
echo "logs=$(twinbox logs --tail 1 v1 | cut -d' ' -f1)"
twinbox exec v1 sh -c 'echo written-in-vm > /tmp/f'; echo "execrc=$?"
echo "readback=$(twinbox exec v1 cat /tmp/f)"
twinbox exec v1 sh -c 'exit 5'; echo "exec5=$?"
twinbox cp v1:/tmp/f /tmp/copied && echo "cpout=$(cat /tmp/copied)"
mkdir -p /tmp/d/sub && echo deep > /tmp/d/sub/x && twinbox cp /tmp/d v1:/tmp/in && echo "cpin=$(twinbox exec v1 cat /tmp/in/sub/x)"
echo "top=$(twinbox top v1 | grep -c 'sh -c i=0')"
twinbox pause v1 >/dev/null
echo "paused=$(twinbox ps --format '{{.State}}')"
a=$(twinbox logs v1 | wc -l); sleep 2; b=$(twinbox logs v1 | wc -l); echo "progress-while-paused=$((b-a))"
twinbox unpause v1 >/dev/null
sleep 1; c=$(twinbox logs v1 | wc -l); echo "progress-after-unpause=$((c-b))"
twinbox run -d --name v2 --isolation vm busybox sleep 300 >/dev/null
echo "running=$(twinbox ps -q | wc -l)"
echo "v2=$(twinbox exec v2 echo alive)"
twinbox stop -t 2 v1 >/dev/null
echo "stopped=$(twinbox inspect v1 | grep -m1 '"Status"' | tr -d ' ",' | cut -d: -f2) code=$(twinbox inspect v1 | grep ExitCode | tr -d ' ,' | cut -d: -f2)"
echo "logs-after-exit=$(twinbox logs v1 | grep -c tick)"
twinbox exec v2 sh -c 'echo kept > /kept'
twinbox restart -t 1 v2 >/dev/null
echo "kept-after-restart=$(twinbox exec v2 cat /kept 2>&1)"
twinbox run -d --name v3 --isolation vm busybox sh -c 'sleep 2; echo late; exit 4' >/dev/null
a=$(twinbox attach v3); echo "attach=$a code=$?"
twinbox rm v1 v3 >/dev/null; twinbox rm -f v2 >/dev/null
echo "afterrm=$(twinbox ps -a -q | wc -l) $(ls /var/lib/twinbox/containers | wc -l) $(ls /run/twinbox | wc -l)"
twinbox run --rm --isolation vm busybox cat /tmp/f 2>/dev/null; echo "fresh=$?"
"#);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(field(&out, "state"), "v1:running:vm");
    assert_eq!(field(&out, "logs"), "tick");
    assert_eq!(field(&out, "execrc"), "0");
    assert_eq!(field(&out, "readback"), "written-in-vm");
    assert_eq!(field(&out, "exec5"), "5");
    assert_eq!(field(&out, "cpout"), "written-in-vm");
    assert_eq!(field(&out, "cpin"), "deep");
    assert_eq!(field(&out, "top"), "1");
    assert_eq!(field(&out, "paused"), "paused");
    assert_eq!(
        field(&out, "progress-while-paused"),
        "0",
        "a paused VM made progress"
    );
    assert!(
        field(&out, "progress-after-unpause")
            .parse::<i32>()
            .unwrap()
            > 0
    );
    assert_eq!(field(&out, "running"), "2", "two VMs at once");
    assert_eq!(field(&out, "v2"), "alive");
    assert_eq!(
        field(&out, "stopped"),
        "exited code=137",
        "sh as PID 1 ignores SIGTERM: killed after the grace period, as under process isolation"
    );
    assert!(field(&out, "logs-after-exit").parse::<i32>().unwrap() > 3);
    assert_eq!(
        field(&out, "kept-after-restart"),
        "kept",
        "the scratch disk survives a restart: {out}\n{err}"
    );
    assert_eq!(field(&out, "attach"), "late code=4");
    assert_eq!(field(&out, "afterrm"), "0 0 0", "rm leaves nothing");
    assert_eq!(
        field(&out, "fresh"),
        "1",
        "a file written in a removed VM is gone"
    );
}

#[test]
fn compare_and_explain_inside_the_lab() {
    let (out, err, code) = lab(r#"
twinbox run --rm --explain --isolation vm busybox true 2>/tmp/explain
echo "explain=$(grep -c ' ms ' /tmp/explain)"
echo "explain-kvm=$(grep -c 'KVM_CREATE_VM' /tmp/explain)"
echo "explain-boot=$(grep -c 'boot to agent' /tmp/explain)"
twinbox compare --only vm --runs 1 --format json busybox echo hi > /tmp/c.json
echo "compare=$?"
echo "json=$(tr -d '\n' < /tmp/c.json)"
"#);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(field(&out, "explain").parse::<i32>().unwrap() >= 8);
    assert_eq!(field(&out, "explain-kvm"), "1");
    assert_eq!(field(&out, "explain-boot"), "1");
    assert_eq!(field(&out, "compare"), "0");
    let v: serde_json::Value = serde_json::from_str(field(&out, "json")).unwrap();
    let c = &v["columns"][0];
    assert_eq!(c["isolation"], "vm");
    assert_eq!(c["output"], "hi\n");
    assert_eq!(c["sees"]["pid"], "1");
    assert_ne!(
        c["sees"]["kernel"], v["host_kernel"],
        "the VM reports its own kernel"
    );
    assert!(c["guest_ram"].as_u64().unwrap() == 256 << 20);
    assert!(c["monitor_rss"].as_u64().unwrap() > 0);
    let phases: Vec<&str> = c["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_str().unwrap())
        .collect();
    for want in [
        "KVM_CREATE_VM",
        "kernel load",
        "vCPUs",
        "boot to agent",
        "start workload",
    ] {
        assert!(phases.contains(&want), "{want} missing from {phases:?}");
    }
}

#[test]
fn process_isolation_on_cgroup_v2_in_the_lab() {
    // The lab's machine mounts a pure cgroup v2 hierarchy: the v2 backend's limits,
    // freezer and OOM reporting, where the development hosts have v1.
    let (out, err, code) = lab(r#"
echo "v2=$(test -f /sys/fs/cgroup/cgroup.controllers && echo yes)"
twinbox run --name hog --memory 32m busybox sh -c 'x=a; while true; do x="$x$x"; done'; echo "oom=$?"
echo "oomkilled=$(twinbox inspect hog | grep -c '"OOMKilled": true')"
twinbox rm hog >/dev/null
twinbox run -d --name tick busybox sh -c 'i=0; while true; do echo $i; i=$((i+1)); sleep 0.2; done' >/dev/null
sleep 2
twinbox pause tick >/dev/null
a=$(twinbox logs tick | wc -l); sleep 2; b=$(twinbox logs tick | wc -l); echo "paused-progress=$((b-a))"
twinbox unpause tick >/dev/null; sleep 1; c=$(twinbox logs tick | wc -l); echo "unpaused-progress=$((c-b))"
echo "cg=$(cat /sys/fs/cgroup/twinbox/$(twinbox inspect tick | grep -m1 '"Id"' | cut -d'"' -f4)/cgroup.procs | wc -l)"
twinbox rm -f tick >/dev/null
id=$(twinbox run -d --cpuset-cpus 0 busybox sleep 30)
echo "cpuset=$(cat /sys/fs/cgroup/twinbox/$id/cpuset.cpus)"
twinbox rm -f $id >/dev/null
twinbox run --rm --pids-limit 10 busybox sh -c 'for i in $(seq 1 30); do sleep 3 & done 2>/dev/null; echo forked'; echo "pids=$?"
echo "devices=$(twinbox run --rm --network none busybox sh -c 'mknod /tmp/mem c 1 1 && head -c1 /tmp/mem >/dev/null 2>&1; echo $?; head -c1 /dev/zero | wc -c' | tr '\n' ' ')"
echo "privdev=$(twinbox run --rm --network none --privileged busybox sh -c 'mknod /tmp/mem c 1 1 && head -c1 /tmp/mem | wc -c')"
echo "left=$(ls /sys/fs/cgroup/twinbox | grep -c '^[0-9a-f]\{64\}$')"
"#);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(field(&out, "v2"), "yes");
    assert_eq!(field(&out, "oom"), "137");
    assert_eq!(field(&out, "oomkilled"), "1");
    assert_eq!(field(&out, "paused-progress"), "0");
    assert!(field(&out, "unpaused-progress").parse::<i32>().unwrap() > 0);
    assert!(
        field(&out, "cg").parse::<i32>().unwrap() >= 1,
        "the workload is in its v2 cgroup"
    );
    assert_eq!(
        field(&out, "cpuset"),
        "0",
        "--cpuset-cpus written to the v2 group"
    );
    assert_eq!(field(&out, "left"), "0", "no cgroup left behind");
    // v2's device rules are an eBPF program: a node can be made, not opened.
    assert_eq!(field(&out, "devices").trim(), "1 1", "{out}");
    assert_eq!(field(&out, "privdev"), "1", "{out}");
}

#[test]
fn virtio_net_over_a_tap_and_a_bzimage_boot() {
    // virtio-net: a bare guest on a TAP device pings the lab machine's end of it.
    // bzImage: the lab's own Debian kernel (a bzImage) boots to its init in our VMM.
    let (out, err, code) = lab(r#"
mkdir -p /tmp/g/bin && cp /bin/busybox /tmp/g/bin/
cat > /tmp/g/init <<'X'
#!/bin/busybox sh
/bin/busybox mkdir -p /proc && /bin/busybox mount -t proc proc /proc
echo "GUEST-KERNEL=$(/bin/busybox uname -r)"
if /bin/busybox ip link set eth0 up 2>/dev/null; then
  /bin/busybox ip addr add 10.77.0.2/24 dev eth0
  i=0; while [ $i -lt 20 ]; do
    if /bin/busybox ping -c 1 -W 1 10.77.0.1 >/dev/null 2>&1; then echo NET-OK; break; fi
    i=$((i+1))
  done
fi
/bin/busybox reboot -f
X
chmod 755 /tmp/g/init
(cd /tmp/g && find . | cpio -o -H newc) > /tmp/g.cpio 2>/dev/null
( i=0; while [ $i -lt 100 ] && ! ip link show tap0 >/dev/null 2>&1; do sleep 0.1; i=$((i+1)); done
  ip addr add 10.77.0.1/24 dev tap0; ip link set tap0 up ) &
echo "net=$(twinbox vm-boot --kernel /lab/vmlinux --initrd /tmp/g.cpio --tap tap0 --quiet --timeout 120 2>&1 | grep -c NET-OK)"
wait
vmlinuz=$(ls /lab/bzimage 2>/dev/null)
twinbox vm-boot --kernel /lab/bzimage --initrd /tmp/g.cpio --quiet --timeout 600 > /tmp/bz.out 2>&1; echo "bzcode=$?"
echo "bzimage=$(grep -m1 GUEST-KERNEL= /tmp/bz.out | cut -d= -f2)"
echo "bzlog=$(tail -c 400 /tmp/bz.out | tr '\n' ' ')"
echo "l1=$(uname -r)"
"#);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(
        field(&out, "net"),
        "1",
        "the guest reached the host over virtio-net + TAP"
    );
    assert_eq!(
        field(&out, "bzimage"),
        field(&out, "l1"),
        "the Debian bzImage booted in twinbox's VMM (vm-boot exit {}, its last output: {})",
        field(&out, "bzcode"),
        field(&out, "bzlog")
    );
}

#[test]
fn networks_between_microvms_and_process_containers() {
    // Inside the lab machine, in a network namespace of the scenario's own (see
    // `twinbox lab`): a user network with a process container and two microVMs that
    // find each other by name; a microVM's published port reached from the host at
    // 127.0.0.1; nothing of twinbox left after rm and network rm.
    let (out, err, code) = lab(r#"
twinbox network create tnet >/dev/null
twinbox run -d --name pa --network tnet busybox nc -ll -p 7 -e cat >/dev/null
twinbox run -d --name va --isolation vm --network tnet busybox nc -ll -p 7 -e cat >/dev/null
echo "vm2vm=$(twinbox run --rm --isolation vm --network tnet busybox sh -c 'ping -c1 -W5 va >/dev/null && echo ping-ok; echo hi | nc -w5 va 7' | tr '\n' ' ')"
echo "vm2proc=$(twinbox run --rm --isolation vm --network tnet busybox sh -c 'echo there | nc -w5 pa 7')"
echo "proc2vm=$(twinbox exec pa sh -c 'echo yo | nc -w5 va 7')"
cat > /tmp/q.sh <<'Q'
printf '\000\024\022\064\001\000\000\001\000\000\000\000\000\000\002pa\000\000\001\000\001' | nc -w 5 127.0.0.11 53 | od -An -tu1 | awk '{for (i = 1; i <= NF; i++) b[n++] = $i} END {print b[n-4] "." b[n-3] "." b[n-2] "." b[n-1]}'
Q
echo "tcpdns=$(twinbox run --rm --isolation vm --network tnet busybox sh -c "$(cat /tmp/q.sh)")"
echo "pa_ip=$(twinbox inspect pa | sed -n 's/.*"IPAddress": "\(10[.0-9]*\)".*/\1/p' | head -1)"
echo "vmaddr=$(twinbox run --rm --isolation vm --network tnet busybox sh -c 'ip -4 -o addr show eth0; ip route | grep default; cat /etc/resolv.conf' | tr '\n' ' ')"
twinbox run -d --name vweb --isolation vm -p 8080:80 busybox sh -c 'echo vmpage > /tmp/index.html; exec httpd -f -p 80 -h /tmp' >/dev/null
i=0; out=; while [ $i -lt 50 ]; do out=$(timeout 5 wget -qO- http://127.0.0.1:8080/ 2>/dev/null) && break; sleep 0.2; i=$((i+1)); done
echo "vmweb=$out"
echo "port=$(twinbox port vweb)"
twinbox stop -t 1 vweb >/dev/null
echo "after-stop=$(timeout 5 wget -qO- http://127.0.0.1:8080/ 2>&1 | grep -c vmpage)"
echo "none=$(twinbox run --rm --isolation vm --network none busybox ip -o link | grep -c ': eth')"
twinbox rm -f pa va vweb >/dev/null
twinbox network rm tnet bridge >/dev/null
sleep 1
echo "links=$(ip -o link | grep -c -E ': (tb|twinbox)')"
echo "rules=$(nft list ruleset | grep -c twinbox)"
echo "forward=$(cat /proc/sys/net/ipv4/ip_forward)"
"#);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let vm2vm = field(&out, "vm2vm");
    assert!(vm2vm.contains("ping-ok") && vm2vm.contains("hi"), "{out}");
    assert_eq!(field(&out, "vm2proc"), "there", "{out}");
    assert_eq!(field(&out, "proc2vm"), "yo", "{out}");
    assert!(field(&out, "pa_ip").starts_with("10."), "{out}");
    assert_eq!(
        field(&out, "tcpdns"),
        field(&out, "pa_ip"),
        "DNS over TCP from a microVM: {out}"
    );
    let addr = field(&out, "vmaddr");
    assert!(
        addr.contains("inet 10.89.0.") && addr.contains("default via 10.89.0.1"),
        "{out}"
    );
    assert!(addr.contains("nameserver 127.0.0.11"), "{out}");
    assert_eq!(field(&out, "vmweb"), "vmpage", "{out}");
    assert_eq!(field(&out, "port"), "80/tcp -> 0.0.0.0:8080");
    assert_eq!(
        field(&out, "after-stop"),
        "0",
        "the rule goes with the stop"
    );
    assert_eq!(field(&out, "none"), "0", "--network none: no eth");
    assert_eq!(field(&out, "links"), "0", "{out}");
    assert_eq!(field(&out, "rules"), "0", "{out}");
    assert_eq!(field(&out, "forward"), "0", "forwarding restored");
}

#[test]
fn images_move_between_models_and_microvm_changes_commit() {
    // A microVM's changes (its writable layer: a host directory it writes through
    // virtio-fs) committed to an image; the image runs under both models; a
    // saved-and-loaded image runs in a microVM; a stopped microVM is exported, copied
    // from and into, and a running one committed and exported — while no mount
    // namespace of the host ever holds a guest-written filesystem.
    let (out, err, code) = lab(r#"
( while [ ! -f /tmp/stopwatch ]; do cat /proc/[0-9]*/mounts 2>/dev/null | awk '$3 ~ /^ext[234]$/ || $1 ~ /^\/dev\/loop/' >> /tmp/guestfs; sleep 0.05; done; touch /tmp/watchdone ) &
twinbox run --name v1 --network none --isolation vm busybox sh -c 'echo from-vm > /root/f; rm /etc/group; ln -s ../../../../../etc /root/up' >/dev/null
twinbox commit -c 'CMD ["cat", "/root/f"]' v1 vmmade:1 >/dev/null
echo "proc=$(twinbox run --rm --network none vmmade:1)"
echo "vm=$(twinbox run --rm --network none --isolation vm vmmade:1)"
echo "gone=$(twinbox run --rm --network none --isolation vm vmmade:1 sh -c '[ -e /etc/group ] && echo present || echo absent')"
echo "exported=$(twinbox export v1 | tar -t | grep -E -c '^(\./)?(root/f|bin/busybox)$') $(twinbox export v1 | tar -t | grep -E -c '^(\./)?etc/group$')"
mkdir -p /tmp/cpout; echo from-host > /tmp/hostfile
echo "diff=$(twinbox diff v1 | grep -E -c '^(A /root/f|D /etc/group|C /etc|C /root)$')"
echo "cpout=$(twinbox cp v1:/root/f /tmp/cpout/ && cat /tmp/cpout/f)"
echo "cpup=$(twinbox cp v1:/root/up/passwd /tmp/cpout/ && head -c 4 /tmp/cpout/passwd)"
twinbox cp /tmp/hostfile v1:/root/up/ && echo "cpin=$(twinbox start -a v1 >/dev/null 2>&1; twinbox cp v1:/etc/hostfile /tmp/cpout/back && cat /tmp/cpout/back) $(ls /etc/hostfile 2>/dev/null | wc -l)"
twinbox run -d --name v2 --network none --isolation vm busybox sh -c 'echo live > /root/l; sleep 600' >/dev/null
i=0; while [ $i -lt 100 ] && ! twinbox exec v2 cat /root/l >/dev/null 2>&1; do sleep 0.2; i=$((i+1)); done
echo "running_export=$(twinbox export v2 | tar -t | grep -E -c '^(\./)?root/l$')"
twinbox commit v2 live:1 >/dev/null && echo "running_commit=$(twinbox run --rm --network none live:1 cat /root/l)"
twinbox rm -f v2 >/dev/null
twinbox save --format oci-archive -o /tmp/v.tar vmmade:1
twinbox rm v1 >/dev/null
twinbox rmi vmmade:1 >/dev/null
twinbox load -i /tmp/v.tar >/dev/null
echo "loaded=$(twinbox run --rm --network none --isolation vm vmmade:1)"
touch /tmp/stopwatch; while [ ! -f /tmp/watchdone ]; do sleep 0.1; done
echo "guestfs=$(wc -l < /tmp/guestfs)"
"#);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(field(&out, "proc"), "from-vm", "{out}");
    assert_eq!(field(&out, "vm"), "from-vm", "{out}");
    assert_eq!(
        field(&out, "gone"),
        "absent",
        "the deletion inside the VM was committed"
    );
    assert_eq!(field(&out, "loaded"), "from-vm", "{out}");
    assert_eq!(
        field(&out, "exported"),
        "2 0",
        "export of a stopped microVM: its file and the image's, not what it deleted: {out}\n{err}"
    );
    assert_eq!(
        field(&out, "diff"),
        "4",
        "diff of a stopped microVM: {out}\n{err}"
    );
    assert_eq!(field(&out, "cpout"), "from-vm", "{out}\n{err}");
    assert_eq!(
        field(&out, "cpup"),
        "root",
        "a symlink in a stopped microVM resolves in its root: {out}\n{err}"
    );
    assert_eq!(
        field(&out, "cpin"),
        "from-host 0",
        "cp into a stopped microVM lands in its root, not the host's: {out}\n{err}"
    );
    assert_eq!(field(&out, "running_export"), "1", "{out}\n{err}");
    assert_eq!(field(&out, "running_commit"), "live", "{out}\n{err}");
    assert_eq!(
        field(&out, "guestfs"),
        "0",
        "no guest-written filesystem mounted on the host: {out}"
    );
}

#[test]
fn foreign_images_run_in_microvms() {
    // The images of the other scenarios, now under --isolation vm: the debootstrapped
    // Debian (imported and saved on the host) and busybox as podman saved it, in both
    // formats. They reach the lab as read-only disks and are loaded from the devices.
    let tb = Tb::new();
    let dir = tb.dir.path();
    tb.ok(&[
        "import",
        "-c",
        "CMD [\"bash\"]",
        debian_tarball().to_str().unwrap(),
        "debian:bookworm",
    ]);
    let id = |tb: &Tb, image: &str| tb.image_field(image, "Id");
    let debian_id = id(&tb, "debian:bookworm");
    let busybox_id = id(&tb, "busybox");
    let debian = dir.join("debian.tar");
    tb.ok(&["save", "-o", debian.to_str().unwrap(), "debian:bookworm"]);
    let twinbox_bb = dir.join("bb.tar");
    tb.ok(&["save", "-o", twinbox_bb.to_str().unwrap(), "busybox"]);
    pok(&tb, &["load", "-i", twinbox_bb.to_str().unwrap()]);
    let mut disks = vec![debian.clone()];
    for (fmt, name) in [("docker-archive", "pd"), ("oci-archive", "po")] {
        pok(&tb, &["tag", &busybox_id, &format!("example.org/{name}:1")]);
        let f = dir.join(format!("{name}.tar"));
        pok(
            &tb,
            &[
                "save",
                "--format",
                fmt,
                "-o",
                f.to_str().unwrap(),
                &format!("example.org/{name}:1"),
            ],
        );
        disks.push(f);
    }
    let disk_refs: Vec<&std::path::Path> = disks.iter().map(|d| d.as_path()).collect();
    let (out, err, code) = lab_with(
        r#"
id() { twinbox image inspect "$1" | sed -n 's/^ *"Id": "\(.*\)",$/\1/p' | head -1; }
twinbox load -i /dev/vda >/dev/null
echo "debian_id=$(id debian:bookworm)"
twinbox run --rm --network none --isolation vm debian:bookworm sh -c 'echo "apt=$(apt-get --version | head -1)"; echo "version=$(cat /etc/debian_version)"; useradd -m bob && echo "bob=$(id -u bob) $(ls -d /home/bob)"'
echo "debian_process=$(twinbox run --rm --network none debian:bookworm cat /etc/debian_version)"
twinbox load -i /dev/vdb >/dev/null
twinbox load -i /dev/vdc >/dev/null
echo "pd_id=$(id example.org/pd:1)"
echo "po_id=$(id example.org/po:1)"
echo "pd=$(twinbox run --rm --network none --isolation vm example.org/pd:1 echo from-docker-archive)"
echo "po=$(twinbox run --rm --network none --isolation vm example.org/po:1 echo from-oci-archive)"
"#,
        &disk_refs,
        3072,
        1,
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(
        field(&out, "debian_id"),
        debian_id,
        "same image in the lab: {out}"
    );
    assert!(field(&out, "apt").starts_with("apt "), "{out}");
    assert!(field(&out, "version").starts_with("12."), "{out}");
    assert_eq!(field(&out, "bob"), "1000 /home/bob", "{out}");
    assert!(field(&out, "debian_process").starts_with("12."), "{out}");
    assert_eq!(field(&out, "pd_id"), busybox_id, "{out}");
    assert_eq!(field(&out, "po_id"), busybox_id, "{out}");
    assert_eq!(field(&out, "pd"), "from-docker-archive", "{out}");
    assert_eq!(field(&out, "po"), "from-oci-archive", "{out}");
}

#[test]
fn the_vmm_is_jailed_confined_and_pinned() {
    // Two emulated CPUs; the microVM asked to run on CPU 1 only: its vCPU and device
    // threads are confined there (the affinity the kernel reports per thread), and
    // the guest still runs. The VMM is a process of its own (the container's Pid),
    // jailed: unprivileged ids, no capabilities, every thread under seccomp, a root
    // holding only its vsock sockets, its own cgroup; a second microVM's VMM has
    // another uid.
    let (out, err, code) = lab_with(
        r#"
twinbox network create pn >/dev/null
twinbox run -d --name pin --network pn --cpuset-cpus 1 --isolation vm busybox sleep 120 >/dev/null
twinbox run -d --name other --network pn --isolation vm busybox sleep 120 >/dev/null || echo "other did not start" >&2
vmm() { twinbox inspect "$1" | sed -n 's/.*"Pid": \([0-9]*\).*/\1/p' | head -1; }
pid=$(vmm pin)
mon=$(twinbox inspect pin | sed -n 's/.*"MonitorPid": \([0-9]*\).*/\1/p' | head -1)
for t in /proc/$pid/task/*; do echo "thread=$(cat $t/comm) $(sed -n 's/^Cpus_allowed_list:\t//p' $t/status)"; done
for t in /proc/$pid/task/*; do echo "tseccomp=$(cat $t/comm) $(sed -n 's/^Seccomp:\t//p' $t/status)"; done
echo "name=$(cat /proc/$pid/comm) parent=$([ "$(sed -n 's/^PPid:\t//p' /proc/$pid/status)" = "$mon" ] && echo monitor)"
echo "ids=$(sed -n 's/^Uid:\t//p' /proc/$pid/status | tr '\t' ' ') / $(sed -n 's/^Gid:\t//p' /proc/$pid/status | tr '\t' ' ')"
echo "caps=$(grep -E '^Cap(Eff|Prm|Bnd|Amb):' /proc/$pid/status | tr -s '\t' ' ' | tr '\n' ' ')"
echo "nnp=$(sed -n 's/^NoNewPrivs:\t//p' /proc/$pid/status)"
echo "root=$(ls -A /proc/$pid/root | tr '\n' ' ')"
echo "rootmount=$(awk '$5=="/"{print $6}' /proc/$pid/mountinfo)"
echo "hostroot=$([ "$(stat -L -c %d:%i /proc/$pid/root)" = "$(stat -c %d:%i /)" ] && echo same || echo other)"
echo "mntns=$([ "$(readlink /proc/$pid/ns/mnt)" = "$(readlink /proc/self/ns/mnt)" ] && echo host || echo own)"
echo "netns=$([ "$(readlink /proc/$pid/ns/net)" = "$(readlink /proc/self/ns/net)" ] && echo host || echo own)"
cg=$(sed -n 's/^0:://p' /proc/$pid/cgroup)
echo "cgroup=$cg mem=$(cat /sys/fs/cgroup$cg/memory.max) pids=$(cat /sys/fs/cgroup$cg/pids.max)"
echo "otheruid=$(sed -n 's/^Uid:\t\([0-9]*\).*/\1/p' /proc/$(vmm other)/status) pinuid=$(sed -n 's/^Uid:\t\([0-9]*\).*/\1/p' /proc/$pid/status)"
echo "net=$(twinbox exec pin sh -c 'ping -c 1 -W 5 other >/dev/null && echo reached')"
twinbox rm -f other >/dev/null
echo "cpuset=$(twinbox inspect pin | sed -n 's/.*"CpusetCpus": "\(.*\)".*/\1/p')"
echo "ran=$(twinbox exec pin echo alive)"
twinbox rm -f pin >/dev/null
echo "bad=$(twinbox run --rm --network none --cpuset-cpus 2 --isolation vm busybox true 2>&1 | grep -c 'not available')"
"#,
        &[],
        2048,
        2,
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let threads: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("thread="))
        .collect();
    let vcpu = threads
        .iter()
        .find(|t| t.starts_with("vcpu0 "))
        .unwrap_or_else(|| panic!("no vcpu0 thread: {out}"));
    assert!(vcpu.ends_with(" 1"), "vcpu0 pinned to CPU 1: {out}");
    let dev = threads
        .iter()
        .find(|t| t.starts_with("devices "))
        .unwrap_or_else(|| panic!("no devices thread: {out}"));
    assert!(dev.ends_with(" 1"), "device thread pinned to CPU 1: {out}");
    assert_eq!(field(&out, "cpuset"), "1");
    assert_eq!(field(&out, "ran"), "alive");
    assert_eq!(field(&out, "bad"), "1", "CPU 2 does not exist: {out}");
    // The jail.
    println!("{out}");
    assert_eq!(field(&out, "name"), "twinbox-vmm parent=monitor", "{out}");
    for t in out.lines().filter_map(|l| l.strip_prefix("tseccomp=")) {
        // KVM's own kernel worker shows up among the VMM's tasks; it runs no user code.
        if !t.starts_with("kvm-") {
            assert!(t.ends_with(" 2"), "every VMM thread is under seccomp: {t}");
        }
    }
    let ids = field(&out, "ids");
    let uid: u32 = ids.split_whitespace().next().unwrap().parse().unwrap();
    assert!(uid >= twinbox::vmm::jail::ID_BASE, "{ids}");
    assert_eq!(
        ids,
        format!("{uid} {uid} {uid} {uid} / {uid} {uid} {uid} {uid}"),
        "real, effective, saved and fs ids are all the VMM's"
    );
    assert_eq!(
        field(&out, "caps").trim(),
        "CapPrm: 0000000000000000 CapEff: 0000000000000000 CapBnd: 0000000000000000 CapAmb: 0000000000000000"
    );
    assert_eq!(field(&out, "nnp"), "1");
    assert_eq!(
        field(&out, "root").trim(),
        "v v_53",
        "the VMM's root holds its vsock sockets only (the agent's is gone once it called): {out}"
    );
    let opts: Vec<&str> = field(&out, "rootmount").split(',').collect();
    for o in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(opts.contains(&o), "the jail is mounted {o}: {opts:?}");
    }
    assert_eq!(field(&out, "hostroot"), "other");
    assert_eq!(field(&out, "mntns"), "own");
    assert_eq!(
        field(&out, "netns"),
        "own",
        "no reach to the host's abstract sockets"
    );
    let cg = field(&out, "cgroup");
    assert!(cg.starts_with("/twinbox/"), "{cg}");
    let mem: u64 = cg
        .split("mem=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        mem,
        (256 << 20) + (64 << 20),
        "guest RAM + the VMM's overhead: {cg}"
    );
    assert!(cg.ends_with("pids=17"), "1 vCPU + 16: {cg}");
    let other: u32 = field(&out, "otheruid")
        .split_whitespace()
        .next()
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("the second microVM's VMM uid: {out}\n{err}"));
    assert_ne!(other, uid, "each VMM its own uid");
    assert_eq!(
        field(&out, "net"),
        "reached",
        "the TAP and the DNS relay work through the jail: {out}"
    );
}

#[test]
fn volumes_are_shared_live_over_virtio_fs() {
    // A process container and a microVM on one named volume, both running, see each
    // other's writes, and a second microVM joins in; read-only is read-only in the
    // guest (and in its virtiofsd); a new volume gets the image's files (copy-up in
    // the guest); a host directory is shared read-write or read-only; a tmpfs is the
    // guest's own; anonymous volumes go with --rm. Hostile paths: a symlink or `..`
    // made in the guest never reaches the host's files. All along, no mount namespace
    // of the host holds a guest-written filesystem (ext2/3/4, a loop device).
    let (out, err, code) = lab(r#"
( while [ ! -f /tmp/stopwatch ]; do cat /proc/[0-9]*/mounts 2>/dev/null | awk '$3 ~ /^ext[234]$/ || $1 ~ /^\/dev\/loop/' >> /tmp/guestfs; sleep 0.05; done; touch /tmp/watchdone ) &
echo host-secret > /host-marker
mkdir -p /tmp/hostdir; echo fromhost > /tmp/hostdir/h.txt
twinbox volume create shared >/dev/null
twinbox run -d --name pw --network none -v shared:/data busybox sh -c 'echo from-process > /data/p; i=0; while [ ! -f /data/v ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done; cat /data/v; sleep 600' >/dev/null
twinbox run -d --name vw --network none --isolation vm -v shared:/data busybox sh -c 'i=0; while [ ! -f /data/p ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done; sed s/process/vm/ /data/p > /data/v.new; mv /data/v.new /data/v; cat /data/v; sleep 600' >/dev/null
i=0; while [ $i -lt 240 ] && ! twinbox logs pw 2>/dev/null | grep -q from-vm; do sleep 0.5; i=$((i+1)); done
echo "proc_sees=$(twinbox logs pw)"
echo "vm_wrote=$(twinbox logs vw)"
echo "vm2=$(twinbox run --rm --network none --isolation vm -v shared:/data busybox sh -c 'cat /data/v; echo from-vm2 > /data/w')"
echo "vm1_sees_vm2=$(twinbox exec vw cat /data/w)"
echo "proc_sees_vm2=$(twinbox exec pw cat /data/w)"
echo "both_running=$(twinbox ps | grep -c -E ' (pw|vw)$')"
echo "escape=$(twinbox exec vw sh -c 'ln -s /host-marker /data/m; ln -s ../../../../../.. /data/up; cat /data/m /data/up/host-marker /data/../host-marker 2>&1 | grep -c host-secret')"
echo "hostlinks=$(readlink /var/lib/twinbox/volumes/shared/_data/m) $(cat /var/lib/twinbox/volumes/shared/_data/p)"
twinbox rm -f pw vw >/dev/null
echo "vmread=$(twinbox run --rm --network none --isolation vm -v shared:/data:ro busybox sh -c 'cat /data/p; echo x > /data/no 2>/dev/null || echo ro-refused' | tr '\n' ' ')"
echo "copyup=$(twinbox run --rm --network none --isolation vm -v etcv:/etc busybox grep -c root /etc/passwd) $(ls /var/lib/twinbox/volumes/etcv/_data | grep -c '^passwd$')"
echo "bindro=$(twinbox run --rm --network none --isolation vm -v /tmp/hostdir:/h:ro busybox sh -c 'cat /h/h.txt; touch /h/no 2>/dev/null || echo refused' | tr '\n' ' ')"
echo "bindrw=$(twinbox run --rm --network none --isolation vm -v /tmp/hostdir:/h busybox sh -c 'echo vm-wrote > /h/back; cat /h/h.txt') $(cat /tmp/hostdir/back)"
echo "tmpfs=$(twinbox run --rm --network none --isolation vm --tmpfs /t:size=1m busybox sh -c 'grep " /t " /proc/mounts')"
echo "anon=$(twinbox run --rm --network none --isolation vm -v /cache busybox true; twinbox volume ls -q | tr '\n' ' ')"
echo "fsd_left=$(cat /proc/[0-9]*/comm 2>/dev/null | grep -c virtiofsd)"
touch /tmp/stopwatch; while [ ! -f /tmp/watchdone ]; do sleep 0.1; done
echo "guestfs=$(wc -l < /tmp/guestfs)"
"#);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(field(&out, "vm_wrote"), "from-vm", "{out}\n{err}");
    assert_eq!(
        field(&out, "proc_sees"),
        "from-vm",
        "the process container read the microVM's write while both ran: {out}\n{err}"
    );
    assert_eq!(field(&out, "vm2"), "from-vm", "{out}\n{err}");
    assert_eq!(field(&out, "vm1_sees_vm2"), "from-vm2", "{out}\n{err}");
    assert_eq!(field(&out, "proc_sees_vm2"), "from-vm2", "{out}\n{err}");
    assert_eq!(field(&out, "both_running"), "2", "{out}\n{err}");
    assert_eq!(
        field(&out, "escape"),
        "0",
        "guest symlinks and .. stay in the guest: {out}\n{err}"
    );
    assert_eq!(
        field(&out, "hostlinks"),
        "/host-marker from-process",
        "the link is stored as made, never followed by virtiofsd: {out}"
    );
    assert_eq!(
        field(&out, "vmread"),
        "from-process ro-refused ",
        "{out}\n{err}"
    );
    assert_eq!(
        field(&out, "copyup"),
        "1 1",
        "copy-up in the guest, kept: {out}"
    );
    assert_eq!(field(&out, "bindro"), "fromhost refused ", "{out}\n{err}");
    assert_eq!(field(&out, "bindrw"), "fromhost vm-wrote", "{out}\n{err}");
    let t = field(&out, "tmpfs");
    assert!(t.contains("tmpfs /t") && t.contains("size=1024k"), "{out}");
    assert_eq!(
        field(&out, "anon"),
        "etcv shared ",
        "the anonymous volume went: {out}"
    );
    assert_eq!(
        field(&out, "fsd_left"),
        "0",
        "every virtiofsd stopped: {out}"
    );
    assert_eq!(
        field(&out, "guestfs"),
        "0",
        "no guest-written filesystem mounted on the host: {out}"
    );
}
