//! Any byte string as an image archive (`load`): it is loaded or refused, and a refused
//! archive leaves no blob in the store.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let d = tempfile::tempdir().unwrap();
    let store = twinbox::image::Store::open(d.path()).unwrap();
    if twinbox::image::archive::load(&store, data).is_err() {
        let left = std::fs::read_dir(d.path().join("images/blobs/sha256")).unwrap().count();
        assert_eq!(left, 0, "a refused archive left blobs behind");
    }
});
