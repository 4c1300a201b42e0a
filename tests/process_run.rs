//! `run` under process isolation: output, exit codes, what the workload sees.

mod common;
use common::*;

#[test]
fn hello_and_exit_codes() {
    let tb = Tb::new();
    assert_eq!(
        tb.ok(&["run", "--rm", "busybox", "echo", "hello"]),
        "hello\n"
    );
    let o = tb.out(&["run", "--rm", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(o.status.code(), Some(3));
    // PID 1 of a namespace ignores signals it has no handler for, even SIGKILL from
    // inside: the shell survives and exits normally, as under Docker.
    let o = tb.out(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "kill -KILL $$; exit 4",
    ]);
    assert_eq!(o.status.code(), Some(4));
    tb.assert_clean(&[]);
}

#[test]
fn stdout_and_stderr_stay_apart() {
    let tb = Tb::new();
    let o = tb.out(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    assert_eq!(stdout(&o), "out\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
}

#[test]
fn the_container_sees_its_own_world_and_the_host_kernel() {
    let tb = Tb::new();
    let out = tb.ok(&[
        "run", "--rm", "-h", "box1", "--network", "none", "busybox", "sh", "-c",
        "hostname; echo pid=$$; ps -o pid,comm | tail -n +2 | wc -l; uname -r; cat /etc/hostname; ip -o link | wc -l",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "box1");
    assert_eq!(lines[1], "pid=1", "the workload is PID 1 in its namespace");
    // ps shows only the container's processes: sh (pid 1), ps, and the pipeline's tail/wc
    let visible: usize = lines[2].trim().parse().unwrap();
    assert!(visible <= 4, "the container sees host processes: {visible}");
    let host = nix::sys::utsname::uname().unwrap();
    assert_eq!(
        lines[3],
        host.release().to_str().unwrap(),
        "process isolation shares the host kernel"
    );
    assert_eq!(lines[4], "box1");
    assert_eq!(lines[5].trim(), "1", "--network none: only lo");
}

#[test]
fn stdin_is_forwarded_with_i() {
    let tb = Tb::new();
    let o = tb.with_stdin(&["run", "-i", "--rm", "busybox", "cat"], b"hi\nthere\n");
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "hi\nthere\n");
    // without -i stdin is /dev/null
    let o = tb.with_stdin(&["run", "--rm", "busybox", "cat"], b"ignored");
    assert_eq!(stdout(&o), "");
}

#[test]
fn env_workdir_user_entrypoint() {
    let tb = Tb::new();
    let envf = tb.dir.path().join("env");
    std::fs::write(&envf, "# comment\nFROM_FILE=1\nSHARED=file\n").unwrap();
    let out = tb.ok(&[
        "run",
        "--rm",
        "-e",
        "A=b c",
        "-e",
        "SHARED=flag",
        "--env-file",
        envf.to_str().unwrap(),
        "-w",
        "/work/dir",
        "-u",
        "nobody",
        "busybox",
        "sh",
        "-c",
        "echo $A; echo $FROM_FILE; echo $SHARED; pwd; id -u; id -g; echo $PATH",
    ]);
    assert_eq!(
        out,
        format!(
            "b c\n1\nflag\n/work/dir\n65534\n65534\n{}\n",
            twinbox::spec::DEFAULT_PATH
        )
    );
    assert_eq!(
        tb.ok(&["run", "--rm", "-u", "123:456", "busybox", "id", "-u"]),
        "123\n"
    );
    assert_eq!(
        tb.ok(&[
            "run",
            "--rm",
            "--entrypoint",
            "echo",
            "busybox",
            "from",
            "entrypoint"
        ]),
        "from entrypoint\n"
    );
}

#[test]
fn capabilities_and_masked_paths_match_docker() {
    let tb = Tb::new();
    let out = tb.ok(&[
        "run", "--rm", "busybox", "sh", "-c",
        "grep CapEff /proc/self/status; grep -E 'NoNewPrivs|Seccomp:' /proc/self/status | tr '\\n' ' '; echo; cat /proc/kcore | wc -c; echo x > /proc/sysrq-trigger 2>/dev/null && echo writable || echo readonly; touch /sys/x 2>/dev/null && echo syswritable || echo sysro",
    ]);
    let want_mask = twinbox::init::caps::default_mask();
    assert!(out.contains(&format!("CapEff:\t{want_mask:016x}")), "{out}");
    // Docker's defaults: no no_new_privs (setuid programs work inside), its seccomp
    // filter on.
    assert!(out.contains("NoNewPrivs:\t0 Seccomp:\t2"), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[2].trim(), "0", "/proc/kcore is masked");
    assert_eq!(lines[3], "readonly");
    assert_eq!(lines[4], "sysro");
    // a non-root user has no effective capabilities
    let out = tb.ok(&[
        "run",
        "--rm",
        "-u",
        "1000",
        "busybox",
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    assert!(out.contains("0000000000000000"), "{out}");
}

#[test]
fn writes_stay_in_the_container_and_image_is_shared() {
    let tb = Tb::new();
    let a = tb.ok(&[
        "run",
        "-d",
        "busybox",
        "sh",
        "-c",
        "echo changed > /etc/motd; rm /bin/vi; sleep 100",
    ]);
    let a = a.trim();
    assert!(eventually(5, || tb
        .out(&["exec", a, "cat", "/etc/motd"])
        .stdout
        .starts_with(b"changed")));
    // a second container sees the pristine image
    let out = tb.out(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "cat /etc/motd; ls /bin/vi",
    ]);
    assert_eq!(stdout(&out), "/bin/vi\n");
    tb.ok(&["rm", "-f", a]);
    tb.assert_clean(&[a.to_string()]);
}

#[test]
fn twenty_parallel_runs_leave_a_clean_ps() {
    let tb = Tb::new();
    let children: Vec<_> = (0..20)
        .map(|i| {
            tb.cmd(&[
                "run",
                "--rm",
                "busybox",
                "sh",
                "-c",
                &format!("echo run{i}"),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let mut outs: Vec<String> = children
        .into_iter()
        .map(|c| {
            let o = c.wait_with_output().unwrap();
            assert!(
                o.status.success(),
                "a parallel run failed ({:?}): {}",
                o.status.code(),
                String::from_utf8_lossy(&o.stderr)
            );
            stdout(&o)
        })
        .collect();
    outs.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("run{i}\n")).collect();
    want.sort();
    assert_eq!(outs, want);
    assert_eq!(tb.ok(&["ps", "-a", "-q"]), "");
    tb.assert_clean(&[]);
}
