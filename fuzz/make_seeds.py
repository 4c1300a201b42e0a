#!/usr/bin/env python3
"""Write the seeds of the guest-facing fuzz targets (fuzz/corpus/<target>/).

Queue targets (src/vmm/devices/virtio/fuzz.rs): byte 0 picks the queue size
(1 << (b % 9)), the rest is guest memory from address 0: descriptor table at 0x0,
available ring at 0x1000, used ring at 0x2000, buffers from 0x3000; vsock's RX queue
at 0x4000/0x5000/0x6000. Run from the repository root: python3 fuzz/make_seeds.py
"""
import struct, os

NEXT, WRITE, INDIRECT = 1, 2, 4
MEM = 64 << 10


def mem(descs, avail_heads, extra=(), size_sel=4, q2=None):
    m = bytearray(0x8000)
    for i, (addr, ln, flags, nxt) in enumerate(descs):
        struct.pack_into("<QIHH", m, 16 * i, addr, ln, flags, nxt)
    struct.pack_into("<HH", m, 0x1000, 0, len(avail_heads))
    for i, h in enumerate(avail_heads):
        struct.pack_into("<H", m, 0x1004 + 2 * i, h)
    if q2:
        d2, heads2 = q2
        for i, (addr, ln, flags, nxt) in enumerate(d2):
            struct.pack_into("<QIHH", m, 0x4000 + 16 * i, addr, ln, flags, nxt)
        struct.pack_into("<HH", m, 0x5000, 0, len(heads2))
        for i, h in enumerate(heads2):
            struct.pack_into("<H", m, 0x5004 + 2 * i, h)
    for addr, data in extra:
        m[addr:addr + len(data)] = data
    # Trim trailing zeros: the harness zero-fills the rest.
    return bytes([size_sel]) + bytes(m).rstrip(b"\0")


def blk_hdr(ty, sector):
    return struct.pack("<IIQ", ty, 0, sector)


def write(target, name, data):
    with open(os.path.join("fuzz/corpus", target, name), "wb") as f:
        f.write(data)


# virtio-blk: read, write, out of range, flush, get-id, a descriptor loop, indirect.
three = lambda dflags: [(0x3000, 16, NEXT, 1), (0x3100, 512, NEXT | dflags, 2), (0x3400, 1, WRITE, 0)]
write("virtio_blk", "read", mem(three(WRITE), [0], [(0x3000, blk_hdr(0, 1))]))
write("virtio_blk", "write", mem(three(0), [0], [(0x3000, blk_hdr(1, 2)), (0x3100, b"\xab" * 512)]))
write("virtio_blk", "write-ro", mem(three(0), [0], [(0x3000, blk_hdr(1, 0)), (0x3100, b"\xcd" * 512)]) + b"\0")
write("virtio_blk", "beyond-end", mem(three(WRITE), [0], [(0x3000, blk_hdr(0, (16 << 10) // 512))]))
write("virtio_blk", "huge-sector", mem(three(0), [0], [(0x3000, blk_hdr(1, 0xFFFFFFFFFFFFFFFF))]))
write("virtio_blk", "flush-and-id", mem(
    [(0x3000, 16, NEXT, 1), (0x3400, 1, WRITE, 0), (0x3500, 16, NEXT, 3), (0x3600, 20, NEXT | WRITE, 4), (0x3700, 1, WRITE, 0)],
    [0, 2], [(0x3000, blk_hdr(4, 0)), (0x3500, blk_hdr(8, 0))]))
ahead = bytearray(mem(three(WRITE), [0], [(0x3000, blk_hdr(0, 1))]))
struct.pack_into("<H", ahead, 1 + 0x1002, 256)  # avail idx a whole ring ahead: once spun the device thread
write("virtio_blk", "avail-ahead", bytes(ahead))
write("virtio_blk", "loop", mem([(0x3000, 16, NEXT, 1), (0x3100, 512, NEXT | WRITE, 0)], [0], [(0x3000, blk_hdr(0, 0))]))
write("virtio_blk", "indirect", mem([(0x3800, 48, INDIRECT, 0)], [0], [
    (0x3800, struct.pack("<QIHH", 0x3000, 16, NEXT, 1) + struct.pack("<QIHH", 0x3100, 512, NEXT | WRITE, 2) + struct.pack("<QIHH", 0x3400, 1, WRITE, 0)),
    (0x3000, blk_hdr(0, 0))]))
write("virtio_blk", "many", mem([(0x3000 + 0x40 * i, 16, NEXT, (i + 1) % 256) for i in range(256)], list(range(0, 256, 3)), size_sel=8))

# virtio-net: TX frames (one and two descriptors), a frame past the limit.
frame = bytes(12) + b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + bytes(46)
write("virtio_net", "tx-one", mem([(0x3000, len(frame), 0, 0)], [0], [(0x3000, frame)]))
write("virtio_net", "tx-split", mem([(0x3000, 12, NEXT, 1), (0x3100, len(frame) - 12, 0, 0)], [0], [(0x3000, frame[:12]), (0x3100, frame[12:])]))
write("virtio_net", "tx-huge", mem([(0x3000, 0xFFFFFFFF, 0, 0)], [0]))
write("virtio_net", "rx-buffer", mem([(0x3000, 2048, WRITE, 0)], [0]) + frame * 3)

# virtio-vsock: a connection request to the agent's port, data, a bad length.
def vhdr(op, sport=1024, dport=1024, ln=0, ty=1, dcid=2, balloc=262144, fwd=0):
    return struct.pack("<QQIIIHHIII", 3, dcid, sport, dport, ln, ty, op, 0, balloc, fwd)

rxq = ([(0x7000, 4096, WRITE, 0), (0x7800, 64, WRITE, 0)], [0, 1])
write("virtio_vsock", "request", mem([(0x3000, 44, 0, 0)], [0], [(0x3000, vhdr(1))], q2=rxq))
write("virtio_vsock", "rw", mem([(0x3000, 44, NEXT, 1), (0x3100, 5, 0, 0)], [0], [(0x3000, vhdr(5, ln=5)), (0x3100, b"hello")], q2=rxq))
write("virtio_vsock", "len-lies", mem([(0x3000, 44, 0, 0)], [0], [(0x3000, vhdr(5, ln=0xFFFFFFFF))], q2=rxq))
write("virtio_vsock", "dgram", mem([(0x3000, 44, 0, 0)], [0], [(0x3000, vhdr(1, ty=3))], q2=rxq))

# The muxer: packets back to back.
seq = vhdr(1, 5000, 1024) + vhdr(5, 5000, 1024, 5) + b"hello" + vhdr(6, 5000, 1024) + vhdr(7, 5000, 1024) + vhdr(4, 5000, 1024) + vhdr(3, 5000, 1024)
write("vsock_muxer", "session", seq)
write("vsock_muxer", "no-listener", vhdr(1, 5001, 9) + vhdr(5, 5001, 9, 3) + b"abc")
write("vsock_muxer", "twice", vhdr(1, 5002, 53) + vhdr(1, 5002, 53) + vhdr(5, 5002, 53, 2, balloc=0) + b"xy")
write("vsock_muxer", "flood", b"".join(vhdr(1, 6000 + i, 9) for i in range(200)))
write("vsock_muxer", "zero-credit", vhdr(1, 5003, 1024, balloc=0) + vhdr(5, 5003, 1024, 4, balloc=0) + b"data" + vhdr(6, 5003, 1024, balloc=0, fwd=0xFFFFFFFF))

# Agent frames: kind (1 byte), stream (u32 BE), length (u32 BE), payload.
def frame_(kind, stream, payload):
    return bytes([kind]) + struct.pack(">II", stream, len(payload)) + payload

JSON = 0
write("agent_frames", "ready", frame_(JSON, 0, b'{"msg":"ready","version":2,"kernel":"6.1"}'))
write("agent_frames", "exited", frame_(JSON, 0, b'{"msg":"exited","code":3,"oom_killed":false}') + frame_(2, 0, b"out") + frame_(3, 0, b"err") + frame_(5, 9, b"data") + frame_(6, 9, b""))
write("agent_frames", "too-long", bytes([JSON]) + struct.pack(">II", 0, 0xFFFFFFFF))
write("agent_frames", "bad-json", frame_(JSON, 7, b'{"msg":"top","rows":[[1,2]]}' + b"\xff"))
