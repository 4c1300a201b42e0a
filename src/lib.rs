//! twinbox: one container image, two isolation models (process and KVM microVM),
//! one Docker-like CLI, and the tools to compare them.

#![warn(missing_debug_implementations)]

pub mod bench;
pub mod cli;
pub mod cptar;
pub mod engine;

pub mod guest;
pub mod image;
pub mod init;
pub mod lab;
pub mod microvm;
pub mod monitor;
pub mod network;
pub mod paths;
pub mod phase;
pub mod process;
pub mod sandbox;
pub mod security;
pub mod settings;
pub mod spec;
pub mod state;
pub mod teardown;
pub mod util;
pub mod vmm;
pub mod volume;
