//! The virtio-vsock packet header (Linux `struct virtio_vsock_hdr`, 44 bytes, LE).

use vm_memory::ByteValued;

pub const HDR_LEN: usize = 44;
pub const TYPE_STREAM: u16 = 1;
pub const HOST_CID: u64 = 2;

pub const OP_REQUEST: u16 = 1;
pub const OP_RESPONSE: u16 = 2;
pub const OP_RST: u16 = 3;
pub const OP_SHUTDOWN: u16 = 4;
pub const OP_RW: u16 = 5;
pub const OP_CREDIT_UPDATE: u16 = 6;
pub const OP_CREDIT_REQUEST: u16 = 7;

pub const SHUTDOWN_RCV: u32 = 1;
pub const SHUTDOWN_SEND: u32 = 2;

#[repr(C, packed)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Header {
    pub src_cid: u64,
    pub dst_cid: u64,
    pub src_port: u32,
    pub dst_port: u32,
    pub len: u32,
    pub type_: u16,
    pub op: u16,
    pub flags: u32,
    pub buf_alloc: u32,
    pub fwd_cnt: u32,
}
// SAFETY: packed plain old data, no padding, every bit pattern valid.
unsafe impl ByteValued for Header {}

const _: () = assert!(std::mem::size_of::<Header>() == HDR_LEN);
