//! What a guest controls, as bytes: see `twinbox::vmm::devices::virtio::fuzz::virtio_blk` for the layout and the properties
//! checked (no panic, no access outside the device's bounds); a hang is a finding too
//! (libFuzzer's -timeout).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    twinbox::vmm::devices::virtio::fuzz::virtio_blk(data);
});
