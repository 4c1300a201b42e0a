//! The guest side of a microVM: the agent that runs as PID 1, and the protocol the host
//! speaks with it over vsock. The agent uses only the shared pieces (`spec`, `launch`,
//! `archive`, `util`), never the host's modules.

pub mod agent;
pub mod protocol;
