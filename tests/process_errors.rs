//! Bad input: one clear error line, a non-zero exit, and nothing left behind.

mod common;
use common::*;

#[test]
fn bad_input_is_refused_and_leaves_nothing() {
    let tb = Tb::new();
    tb.fails(
        &["run", "--rm", "nosuchimage", "true"],
        125,
        "no such image",
    );
    tb.fails(
        &["run", "--rm", "busybox", "nosuchcmd"],
        127,
        "executable file not found",
    );
    tb.fails(
        &["run", "busybox", "nosuchcmd"],
        127,
        "executable file not found",
    );
    tb.fails(
        &["run", "--rm", "busybox", "/etc/passwd"],
        126,
        "permission denied",
    );
    tb.fails(
        &["run", "--rm", "--memory", "lots", "busybox", "true"],
        125,
        "invalid size",
    );
    tb.fails(
        &["run", "--rm", "--memory", "1k", "busybox", "true"],
        125,
        "minimum memory",
    );
    tb.fails(
        &["run", "--rm", "-w", "rel", "busybox", "true"],
        125,
        "absolute path",
    );
    tb.fails(
        &["run", "--rm", "-u", "ghost", "busybox", "true"],
        125,
        "unable to find user ghost",
    );
    tb.fails(
        &["run", "--rm", "--network", "nosuchnet", "busybox", "true"],
        125,
        "network nosuchnet not found",
    );
    tb.fails(
        &["run", "--rm", "--name", "bad/name", "busybox", "true"],
        125,
        "invalid container name",
    );
    tb.fails(
        &["run", "--bogus-flag", "busybox"],
        125,
        "unexpected argument",
    );
    tb.fails(&["stop", "nosuch"], 1, "no such container");
    tb.fails(&["logs", "nosuch"], 125, "no such container");
    tb.fails(&["exec", "nosuch", "true"], 125, "no such container");
    tb.fails(&["kill", "-s", "NOPE", "x"], 125, "invalid signal");
    tb.assert_clean(&[]);

    // duplicate name, rm of a running container, pause of a stopped one
    let id = tb
        .ok(&["run", "-d", "--name", "one", "busybox", "sleep", "100"])
        .trim()
        .to_string();
    tb.fails(
        &["run", "--name", "one", "busybox", "true"],
        125,
        "already in use",
    );
    tb.fails(
        &["create", "--name", "one", "busybox", "true"],
        125,
        "already in use",
    );
    tb.fails(
        &["rm", "one"],
        1,
        "stop the container before removing or force remove",
    );
    tb.fails(&["unpause", "one"], 1, "is not paused");
    tb.ok(&["pause", "one"]);
    tb.fails(&["pause", "one"], 1, "already paused");
    tb.ok(&["rm", "-f", "one"]);
    tb.assert_clean(&[id]);

    let id = tb
        .ok(&["create", "--name", "two", "busybox", "true"])
        .trim()
        .to_string();
    tb.fails(&["pause", "two"], 1, "is not running");
    tb.fails(&["kill", "two"], 1, "is not running");
    tb.fails(&["exec", "two", "true"], 125, "is not running");
    // cp reaches a created container (its root is mounted privately for the copy);
    // a path it does not have is one clear line.
    tb.fails(
        &["cp", "two:/no/such/file", "/tmp/x"],
        125,
        "copying two:/no/such/file",
    );
    tb.fails(
        &["rename", "two", "bad/name"],
        125,
        "invalid container name",
    );
    tb.ok(&["rm", "two"]);
    tb.assert_clean(&[id]);
}

#[test]
fn ambiguous_and_prefix_references() {
    let tb = Tb::new();
    let a = tb.ok(&["create", "busybox", "true"]).trim().to_string();
    assert!(tb.ok(&["inspect", "--", &a[..8]]).contains(&a));
    tb.ok(&["rm", &a[..10]]);
    tb.assert_clean(&[a]);
}
