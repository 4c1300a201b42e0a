//! The image store: content-addressed blobs (sha256), OCI manifests and configs, a tag
//! index, and layers unpacked once and shared read-only between containers.

pub mod archive;
pub mod blob;
mod builtin;
pub mod changes;
pub mod diff;
mod reference;
pub mod registry;
mod store;
pub mod unpack;

pub use builtin::BUSYBOX_ENV;
pub use reference::Reference;
pub use store::{decompressed, sha256_digest, Image, ImageError, Store};
