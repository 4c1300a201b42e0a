//! `compare` and `run --explain` (the process column natively; the vm column's own test
//! runs in the lab, see vm_lab.rs).

mod common;
use common::*;

#[test]
fn compare_process_column_as_json() {
    let tb = Tb::new();
    let out = tb.ok(&[
        "compare", "--only", "process", "--runs", "2", "--format", "json", "busybox", "echo", "hi",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let c = &v["columns"][0];
    assert_eq!(c["isolation"], "process");
    assert_eq!(c["emulated"], false);
    assert_eq!(c["exit_code"], 0);
    assert_eq!(c["output"], "hi\n");
    let host = nix::sys::utsname::uname().unwrap();
    assert_eq!(c["sees"]["kernel"], host.release().to_str().unwrap());
    assert_eq!(c["sees"]["pid"], "1");
    let phases: Vec<&str> = c["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_str().unwrap())
        .collect();
    for want in ["cgroup", "clone", "rootfs", "pivot_root", "exec"] {
        assert!(phases.contains(&want), "{want} missing from {phases:?}");
    }
    assert_eq!(c["wall_samples"].as_array().unwrap().len(), 2);
    assert!(c["wall_ms"]["median"].as_f64().unwrap() > 0.0);
    tb.assert_clean(&[]);
}

#[test]
fn compare_table_names_both_sides_of_the_boundary() {
    let tb = Tb::new();
    let out = tb.ok(&[
        "compare", "--only", "process", "--runs", "1", "busybox", "true",
    ]);
    for row in [
        "start-up",
        "pivot_root",
        "total, create to exit",
        "what the workload sees",
        "(host's)",
    ] {
        assert!(out.contains(row), "{row} missing:\n{out}");
    }
}

#[test]
fn explain_narrates_each_step() {
    let tb = Tb::new();
    let o = tb.out(&["run", "--rm", "--explain", "busybox", "true"]);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    for (step, words) in [
        ("clone", "namespaces"),
        ("pivot_root", "the host's / is detached"),
        ("exec", "execve"),
    ] {
        let line = err
            .lines()
            .find(|l| l.trim_start().starts_with(step))
            .unwrap_or_else(|| panic!("no {step} line in:\n{err}"));
        assert!(line.contains(" ms ") && line.contains(words), "{line}");
    }
}

#[test]
fn compare_and_lab_refuse_bad_input_and_leave_nothing() {
    let tb = Tb::new();
    tb.fails(
        &["compare", "--only", "process", "nosuchimage"],
        125,
        "no such image",
    );
    tb.fails(
        &["compare", "--only", "process", "busybox", "nosuchcmd"],
        127,
        "executable file not found",
    );
    tb.fails(&["lab"], 125, "nothing to run");
    tb.fails(
        &["lab", "--script", "/nonexistent/script.sh"],
        125,
        "cannot read",
    );
    tb.assert_clean(&[]);
}
