//! Terminals: `-t`, `-it`, attach and detaching with Ctrl-P Ctrl-Q. Driven through
//! `script` (util-linux), which gives twinbox a real terminal.

mod common;
use common::*;
use std::io::Write;
use std::process::{Command, Stdio};

/// Run `twinbox args` under `script` with `input` typed slowly; returns (output, code).
fn in_terminal(tb: &Tb, args: &str, input: &[(u64, &[u8])]) -> (String, Option<i32>) {
    let cmdline = format!(
        "TWINBOX_ROOT={} TWINBOX_RUN_ROOT={} nsenter --net={} {} {args}",
        tb.root().display(),
        tb.run_root().display(),
        tb.netns_path(),
        bin()
    );
    let mut child = Command::new("script")
        .args(["-qec", &cmdline, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux) is needed for terminal tests");
    let mut stdin = child.stdin.take().unwrap();
    for (delay_ms, bytes) in input {
        std::thread::sleep(std::time::Duration::from_millis(*delay_ms));
        let _ = stdin.write_all(bytes);
        let _ = stdin.flush();
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        o.status.code(),
    )
}

#[test]
fn tty_comes_from_the_containers_devpts() {
    let tb = Tb::new();
    let (out, code) = in_terminal(&tb, "run --rm -t busybox tty", &[]);
    assert_eq!(code, Some(0));
    assert!(out.contains("/dev/pts/0"), "{out}");
}

#[test]
fn interactive_shell_with_it() {
    let tb = Tb::new();
    let (out, code) = in_terminal(
        &tb,
        "run -it --rm busybox sh",
        &[(800, b"echo in-$((40+2))\r"), (300, b"exit 6\r")],
    );
    assert!(out.contains("in-42"), "{out}");
    assert_eq!(code, Some(6));
    tb.assert_clean(&[]);
}

#[test]
fn attach_and_detach_with_ctrl_p_ctrl_q() {
    let tb = Tb::new();
    let id = tb
        .ok(&["run", "-dit", "--name", "sh1", "busybox", "sh"])
        .trim()
        .to_string();
    let (out, code) = in_terminal(
        &tb,
        "attach sh1",
        &[(500, b"echo attached-$((1+1))\r"), (300, b"\x10\x11")],
    );
    assert!(out.contains("attached-2"), "{out}");
    assert_eq!(code, Some(0));
    assert_eq!(
        tb.ok(&["ps", "--format", "{{.State}}"]),
        "running\n",
        "detaching keeps it running"
    );
    let (_, code) = in_terminal(&tb, "attach sh1", &[(500, b"exit 9\r")]);
    assert_eq!(code, Some(9));
    tb.ok(&["rm", "sh1"]);
    tb.assert_clean(&[id]);
}

#[test]
fn exec_it_gets_its_own_terminal() {
    let tb = Tb::new();
    let id = tb
        .ok(&["run", "-d", "busybox", "sleep", "100"])
        .trim()
        .to_string();
    let (out, code) = in_terminal(
        &tb,
        &format!("exec -it {id} sh"),
        &[(500, b"tty\r"), (300, b"exit 2\r")],
    );
    assert!(out.contains("/dev/pts/"), "{out}");
    assert_eq!(code, Some(2));
    tb.ok(&["rm", "-f", &id]);
    tb.assert_clean(&[id]);
}
