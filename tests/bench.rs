//! `bench`: raw samples as JSON, a chart per suite, peers measured or skipped with a
//! reason (the microVM parts are exercised by `compare` in the lab tests).

mod common;
use common::*;

#[test]
fn bench_startup_writes_samples_and_charts() {
    let tb = Tb::new();
    let out_dir = tb.dir.path().join("results");
    let out = tb.ok(&[
        "bench",
        "startup",
        "cpu",
        "io",
        "--runs",
        "3",
        "--no-vm",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.contains("twinbox --isolation process"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("bench.json")).unwrap())
            .unwrap();
    assert!(v["machine"]["cpus"].as_u64().unwrap() >= 1);
    let startup = &v["suites"][0];
    assert_eq!(startup["suite"], "startup");
    let series = startup["series"].as_array().unwrap();
    let tb_series = series
        .iter()
        .find(|s| s["name"] == "twinbox --isolation process")
        .unwrap();
    assert_eq!(
        tb_series["samples"].as_array().unwrap().len(),
        3,
        "raw samples kept"
    );
    assert!(tb_series["stat"]["median"].as_f64().unwrap() > 0.0);
    for peer in ["crun", "runc"] {
        let s = series.iter().find(|s| s["name"] == peer).unwrap();
        assert!(
            s["samples"]
                .as_array()
                .map(|a| a.len() == 3)
                .unwrap_or(false)
                || s["skipped"].is_string(),
            "{peer} is measured or skipped with a reason: {s}"
        );
    }
    let svg = std::fs::read_to_string(out_dir.join("startup.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("twinbox --isolation process"));
    assert!(out_dir.join("cpu.svg").exists());
    // io: the writable layer and a volume, both measured; the bench's volume is gone
    let io = v["suites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["suite"] == "io")
        .unwrap();
    for name in [
        "write+fsync+read 64 MiB: --isolation process (writable layer)",
        "write+fsync+read 64 MiB: --isolation process (volume)",
        "untar 400 files x5: --isolation process (writable layer)",
        "untar 400 files x5: --isolation process (volume)",
    ] {
        let s = io["series"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {io}"));
        assert_eq!(s["samples"].as_array().map(|a| a.len()), Some(3), "{s}");
    }
    assert_eq!(
        tb.ok(&["volume", "ls", "-q"]),
        "",
        "the bench's volume is removed"
    );
    tb.fails(&["bench", "nosuchsuite"], 125, "unknown suite");
    tb.assert_clean(&[]);
}
