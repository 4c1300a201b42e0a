//! Devices: legacy ones on the I/O bus, virtio ones on the MMIO bus.

// Guest- and archive-controlled numbers flow through here: every narrowing or
// sign-changing cast must be checked (try_from) or say why it cannot lose.
#![cfg_attr(
    not(test),
    deny(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_possible_wrap,
        clippy::cast_lossless
    )
)]

pub mod boot_timer;
pub mod i8042;
pub mod serial;
pub mod virtio;
