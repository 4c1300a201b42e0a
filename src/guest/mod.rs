//! The guest side of a microVM: the agent that runs as PID 1, and the protocol the host
//! speaks with it over vsock. The agent uses only the shared pieces (`spec`, `init`,
//! `archive`, `util`, `network::netlink`), never the host's modules.

pub mod agent;
mod net;
pub mod protocol;
pub mod vsock;
