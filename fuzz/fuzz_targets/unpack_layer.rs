//! Any byte string as a layer tarball: unpacking must either succeed with every entry
//! inside the destination or fail cleanly — never write outside it, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let outer = tempfile::tempdir().unwrap();
    let dest = outer.path().join("root");
    std::fs::create_dir(&dest).unwrap();
    let _ = twinbox::image::unpack::unpack_layer(data, &dest);
    // Nothing may appear next to the destination.
    let names: Vec<_> = std::fs::read_dir(outer.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("root")], "an entry escaped");
});
