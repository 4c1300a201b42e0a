//! The guest side of a microVM: the agent that runs as PID 1, and the protocol the host
//! speaks with it over vsock. The agent uses only the shared pieces (`spec`, `init`,
//! `archive`, `util`, `network::netlink`), never the host's modules.

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

pub mod agent;
mod net;
pub mod protocol;
pub mod vsock;
