#!/usr/bin/env python3
"""Writes the committed seed corpora Fuzz/corpus/reader and Fuzz/corpus/writer.

The input layouts are documented at the top of fuzz_reader.c and
fuzz_writer.c. Run from anywhere: python3 Fuzz/make_seeds.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def frame(payload, big=False):
    return struct.pack(">Q" if big else "<Q", len(payload)) + payload


def stream(payloads, big=False):
    return b"".join(frame(p, big) for p in payloads)


def reader_seed(ring_exp, flags, max_frame, piece, specs, mult, data):
    hdr = bytes([ring_exp, flags, max_frame & 0xFF, (max_frame >> 8) & 0xFF, piece, len(specs)])
    return hdr + bytes(specs) + bytes([mult - 1]) + data


def writer_seed(flags, count, start, lens, specs, mult):
    hdr = bytes([flags, count & 0xFF, count >> 8, start & 0xFF, start >> 8, len(lens) - 1])
    return hdr + bytes(lens) + bytes([len(specs)]) + bytes(specs) + bytes([mult - 1])


BIG, RESET, TWICE, HOLD, DONTWAIT = 1, 2, 4, 8, 16

readme = b"toby is a good dog"
reader = {
    "readme_le": reader_seed(1, 0, 100, 0, [], 1, frame(readme)),
    "small_frames_le": reader_seed(0, TWICE, 8, 0, [], 1, stream([b"a", b"", b"hi", b"12345678", b""])),
    "small_frames_be_byte_at_a_time": reader_seed(
        0, BIG | HOLD, 8, 0, [2], 1, stream([b"a", b"", b"hi", b"12345678", b""], True)),
    "direct_frame_be": reader_seed(
        0, BIG | TWICE, 300, 7, [5, 0, 1, 17], 2,
        stream([b"abc", bytes(range(200)), b"xyz", b""], True)),
    "direct_frame_spill_le": reader_seed(
        1, HOLD, 1000, 0, [60], 4, stream([bytes(range(256)) * 2, b"after", b"", b"end"])),
    "limit_exact_then_over": reader_seed(
        0, 0, 20, 0, [3, 9], 1, stream([b"x" * 20]) + frame(b"y" * 21)),
    "crate_vector_too_large_be": reader_seed(
        2, BIG, 1024, 0, [], 1, bytes.fromhex("00004f3fca152aef") + b"junk"),
    "truncated_mid_prefix": reader_seed(0, 0, 50, 0, [4], 1, stream([b"ok"]) + b"\x05\x00\x00"),
    "truncated_mid_payload": reader_seed(0, DONTWAIT, 50, 0, [1, 6], 1, stream([b"ok"]) + frame(b"abcdef")[:11]),
    "truncated_direct": reader_seed(0, 0, 500, 3, [], 1, frame(bytes(100))[:60]),
    "reset_after_frames": reader_seed(0, RESET | TWICE, 50, 0, [10], 1, stream([b"one", b"two"]) + b"\x09\x00"),
    "many_frames_wrap_32": reader_seed(
        1, HOLD, 24, 0, [12, 7, 30], 1, stream([bytes([i]) * (i % 25) for i in range(60)])),
    "direct_fill_more_room_than_owed": reader_seed(
        0, 0, 300, 255, [40], 1, stream([bytes(range(150)), b"z", b""])),
    # Regression: a frame too big for the ring whose prefix is decoded after
    # EOF is known, with no payload buffered (next() twice must agree).
    "regress_direct_after_eof_next_twice": reader_seed(
        1, TWICE | HOLD, 200, 0, [], 1, frame(b"a") + struct.pack("<Q", 100)),
    "empty_stream": reader_seed(3, 0, 0, 0, [], 1, b""),
}

writer = {
    "readme_one_frame": writer_seed(0, 1, 0, [18], [], 1),
    "short_writes_be": writer_seed(BIG | 4, 12, 0, [5, 0, 13, 0, 1, 40], [4, 0, 5, 1, 2, 11], 1),
    "eagain_fresh_writer": writer_seed(8 | 2, 30, 0, [3, 0, 9], [1, 20, 2, 6], 3),
    "more_than_512_frames": writer_seed(0, 1050, 0, [1, 7, 2], [], 1),
    "more_than_512_short": writer_seed(BIG, 1090, 0, [0, 3, 0, 250], [200, 0, 255, 1], 40),
    "epipe_then_resume": writer_seed(0, 20, 0, [10, 0], [30, 3], 1),
    "start_mid_stream": writer_seed(16, 10, 37, [9, 0, 4], [7], 1),
    "empty_payloads_only": writer_seed(4, 1090, 0, [0], [5, 0, 2], 40),
}

for name, seeds in (("reader", reader), ("writer", writer)):
    d = os.path.join(HERE, "corpus", name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        os.remove(os.path.join(d, f))
    for k, v in seeds.items():
        with open(os.path.join(d, k), "wb") as fh:
            fh.write(v)
    print(f"{d}: {len(seeds)} seeds")
