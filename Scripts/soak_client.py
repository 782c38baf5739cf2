#!/usr/bin/env python3
"""Soak client for a TobyTcp echo server (`toby echo`), Python 3.11 stdlib only.

An independent implementation of the wire format: every message is an 8-byte
unsigned length of the payload (little-endian by default, big-endian with
--byte-order big), then the payload. Nothing here shares code with TobyTCP.

THREADS worker threads each loop until the deadline: open a connection, send a
random number of messages (sizes 0..4 MiB, mostly small) pipelined with a
bounded number in flight, read every echo and compare it byte for byte with
what was sent, then close. The payload of message SEQ on connection CONN is
regenerated for the check from (seed, CONN, SEQ) instead of being kept: its
first 16 bytes are CONN and SEQ, the rest is a slice of a pool of random bytes
made from the seed at an offset that is a hash of (CONN, SEQ).

Connections end in one of these ways:
  clean-close     all echoes arrived, then close()
  clean-halfclose shutdown(SHUT_WR) after the last message, then read to EOF:
                  the server must echo everything and then end the stream, and
                  send nothing more
  random close    (about 1 in 8) abruptly mid-stream: close() or RST
                  (SO_LINGER 0), between frames or in the middle of a frame,
                  with echoes still in flight. Those echoes are 'abandoned by
                  client', never 'lost'.
Some frames are written in several pieces (split points anywhere, the prefix
included) with a few milliseconds between the pieces.

Counts (all connections):
  sent       frames whose last byte was written
  received   complete echo frames read
  corrupted  echoes that differ from what was sent at that position (bytes,
             length), plus data after the expected end of a half-closed stream
  lost       on connections the client did not abort: frames sent whose echo
             never arrived (early EOF, reset, stall), whatever the reason
  abandoned  on aborted connections: frames sent whose echo had not arrived
  sent == received + lost + abandoned always holds.

Exit status 0 only if lost == corrupted == errors == 0.
"""

import argparse
import errno
import hashlib
import os
import random
import selectors
import socket
import struct
import sys
import threading
import time

MiB = 1 << 20
MAX_SIZE = 4 * MiB
POOL_SIZE = 12 * MiB
HEADER = struct.Struct("<QQ")  # connection id, sequence number (payload's first 16 bytes)
STALL_SECONDS = 30.0  # no progress for this long on a connection: an error, its in-flight echoes are lost
RECV_CHUNK = 256 * 1024

# Sizes worth hitting on purpose: empty, tiny, around the server's default
# 64 KiB ring (65536 - 8 is the largest frame it holds), around its 1 MiB
# first large-frame allocation, and the top of the range.
EDGE_SIZES = [0, 1, 7, 8, 9, 15, 16, 17, 65527, 65528, 65529, 65536, 65537,
              MiB - 8, MiB, MiB + 1, 2 * MiB, MAX_SIZE - 1, MAX_SIZE]


def draw_size(rng):
    r = rng.random()
    if r < 0.02:
        return rng.choice(EDGE_SIZES)
    if r < 0.70:
        return rng.randint(0, 256)          # mostly small
    if r < 0.90:
        return rng.randint(257, 64 * 1024)
    if r < 0.98:
        return rng.randint(64 * 1024 + 1, MiB)
    return rng.randint(MiB + 1, MAX_SIZE)   # some large


def draw_message_count(rng):
    r = rng.random()
    if r < 0.03:
        return 0                             # connect, then close: no messages at all
    if r < 0.25:
        return rng.randint(1, 5)
    if r < 0.85:
        return rng.randint(6, 200)
    return rng.randint(201, 2000)


class Payloads:
    """Deterministic payloads: regenerated for checking, never stored."""

    def __init__(self, seed):
        self.seed = seed
        self.pool = random.Random(seed).randbytes(POOL_SIZE)

    def make(self, conn_id, seq, size):
        if size == 0:
            return b""
        header = HEADER.pack(conn_id, seq)
        if size <= len(header):
            return header[:size]
        h = hashlib.blake2b(header, digest_size=8, key=self.seed.to_bytes(8, "little")).digest()
        body = size - len(header)
        offset = int.from_bytes(h, "little") % (POOL_SIZE - body + 1)
        return header + self.pool[offset:offset + body]


class Stats:
    FIELDS = [
        "connections_opened", "connect_failures", "clean_closes", "clean_halfcloses",
        "random_closes", "random_close_fin", "random_close_rst", "random_close_mid_frame",
        "sent", "received", "verified", "corrupted", "lost", "abandoned",
        "bytes_sent", "bytes_received", "split_frames", "split_writes",
        "max_size_sent", "errors",
    ]

    def __init__(self):
        self.lock = threading.Lock()
        for f in self.FIELDS:
            setattr(self, f, 0)
        self.error_samples = []
        self.corruption_samples = []

    def merge(self, local):
        with self.lock:
            for f in self.FIELDS:
                if f == "max_size_sent":
                    self.max_size_sent = max(self.max_size_sent, local.get(f, 0))
                else:
                    setattr(self, f, getattr(self, f) + local.get(f, 0))

    def error(self, text):
        with self.lock:
            self.errors += 1
            if len(self.error_samples) < 20:
                self.error_samples.append(text)

    def corruption(self, text):
        with self.lock:
            if len(self.corruption_samples) < 20:
                self.corruption_samples.append(text)


class ConnectionRun:
    """One connection, driven by a selector loop on a non-blocking socket."""

    def __init__(self, cfg, payloads, stats, conn_id, rng):
        self.cfg = cfg
        self.payloads = payloads
        self.stats = stats
        self.conn_id = conn_id
        self.rng = rng
        self.local = dict.fromkeys(Stats.FIELDS, 0)
        self.prefix = struct.Struct("<Q" if cfg.byte_order == "little" else ">Q")

        self.total = draw_message_count(rng)
        self.max_inflight = rng.choice([1, 2, 4, 8, 16, 32])
        self.max_inflight_bytes = 16 * MiB
        self.split_rate = rng.choice([0.0, 0.02, 0.1])
        self.halfclose = rng.random() < 0.5
        # Abort plan: after `abort_after` frames were queued; optionally part
        # way into the next frame; by close() or by RST.
        self.abort = rng.random() < cfg.random_close_rate and self.total > 0
        if self.abort:
            self.abort_after = rng.randint(0, self.total - 1)
            self.abort_mid_frame = rng.random() < 0.4
            self.abort_rst = rng.random() < 0.5

        self.next_seq = 0          # next message to queue
        self.out = []              # pending writes: [memoryview, not_before, seq or None (last piece of seq)]
        self.out_pos = 0
        self.inflight = []         # (seq, size) in order; echo expected in this order
        self.inflight_head = 0
        self.inflight_bytes = 0
        self.rbuf = bytearray()
        self.wrote_eof = False
        self.done_sending = False
        self.aborting = False

    # --- sending ---------------------------------------------------------

    def queue_message(self, now):
        seq = self.next_seq
        self.next_seq += 1
        size = draw_size(self.rng)
        payload = self.payloads.make(self.conn_id, seq, size)
        frame = self.prefix.pack(size) + payload  # one copy; fine for a test
        mv = memoryview(frame)
        if self.rng.random() < self.split_rate and len(frame) > 1:
            pieces = self.rng.randint(2, min(6, len(frame)))
            points = sorted(self.rng.sample(range(1, len(frame)), pieces - 1))
            if self.rng.random() < 0.5 and len(frame) > 8:
                points = sorted(set(points) | {self.rng.randint(1, 7)})  # cut inside the prefix too
            bounds = [0] + points + [len(frame)]
            t = now
            for i in range(len(bounds) - 1):
                if i > 0:
                    t += self.rng.uniform(0.001, 0.02)
                last = i == len(bounds) - 2
                self.out.append([mv[bounds[i]:bounds[i + 1]], t, seq if last else None])
            self.local["split_frames"] += 1
            self.local["split_writes"] += len(bounds) - 1
        else:
            self.out.append([mv, 0.0, seq])
        self.inflight.append((seq, size))
        self.inflight_bytes += size
        self.local["max_size_sent"] = max(self.local["max_size_sent"], size)

    def queue_partial_frame(self):
        """For an abort mid-frame: part of one more frame, never completed."""
        size = draw_size(self.rng)
        frame = self.prefix.pack(size) + self.payloads.make(self.conn_id, self.next_seq, size)
        cut = self.rng.randint(1, len(frame) - 1) if len(frame) > 1 else 1
        self.out.append([memoryview(frame)[:cut], 0.0, None])

    def refill(self, now, past_deadline):
        if self.done_sending or self.aborting:
            return
        outstanding = len(self.inflight) - self.inflight_head
        while self.next_seq < self.total and not past_deadline:
            if self.abort and self.next_seq == self.abort_after:
                break
            if outstanding >= self.max_inflight:
                break
            if outstanding > 0 and self.inflight_bytes >= self.max_inflight_bytes:
                break
            self.queue_message(now)
            outstanding += 1
        if self.abort and self.next_seq == self.abort_after and not past_deadline:
            if self.abort_mid_frame:
                self.queue_partial_frame()
            self.aborting = True
            return
        if self.next_seq >= self.total or past_deadline:
            self.done_sending = True

    def write_some(self, sock, now):
        """Writes what is due. Returns the earliest time a delayed piece is due, or None."""
        while self.out_pos < len(self.out):
            item = self.out[self.out_pos]
            mv, not_before, seq = item
            if not_before > now:
                return not_before
            try:
                n = sock.send(mv)
            except (BlockingIOError, InterruptedError):
                return None
            self.local["bytes_sent"] += n
            if n < len(mv):
                item[0] = mv[n:]
                return None
            self.out_pos += 1
            if seq is not None:
                self.local["sent"] += 1
        if self.out_pos == len(self.out):
            self.out.clear()
            self.out_pos = 0
        return None

    # --- receiving -------------------------------------------------------

    def parse(self):
        buf = self.rbuf
        pos = 0
        while len(buf) - pos >= 8:
            (size,) = self.prefix.unpack_from(buf, pos)
            if self.inflight_head >= len(self.inflight):
                self.corrupt(f"echo frame (length {size}) with nothing in flight")
                raise Corrupt()
            seq, want = self.inflight[self.inflight_head]
            if size != want:
                self.corrupt(f"seq {seq}: echo length {size}, sent {want}")
                raise Corrupt()
            if len(buf) - pos - 8 < size:
                break
            got = buf[pos + 8:pos + 8 + size]
            pos += 8 + size
            self.inflight_head += 1
            self.inflight_bytes -= size
            self.local["received"] += 1
            expected = self.payloads.make(self.conn_id, seq, size)
            if got == expected:
                self.local["verified"] += 1
            else:
                self.local["corrupted"] += 1
                self.corrupt(describe_mismatch(seq, got, expected))
        if pos:
            del buf[:pos]
        if self.inflight_head > 4096:
            del self.inflight[:self.inflight_head]
            self.inflight_head = 0

    def corrupt(self, text):
        self.stats.corruption(f"conn {self.conn_id}: {text}")

    def outstanding(self):
        return len(self.inflight) - self.inflight_head

    # --- the loop --------------------------------------------------------

    def run(self):
        cfg = self.cfg
        try:
            sock = socket.create_connection((cfg.host, cfg.port), timeout=10)
        except OSError as e:
            self.local["connect_failures"] += 1
            self.stats.error(f"conn {self.conn_id}: connect: {e}")
            self.stats.merge(self.local)
            time.sleep(0.2)
            return
        self.local["connections_opened"] += 1
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        sel = selectors.DefaultSelector()
        sel.register(sock, selectors.EVENT_READ)
        last_progress = time.monotonic()
        outcome = None  # "clean", "halfclose", "abort", "error"
        try:
            while True:
                now = time.monotonic()
                past_deadline = time.time() >= cfg.deadline
                self.refill(now, past_deadline)
                due = self.write_some(sock, now)
                pending_out = self.out_pos < len(self.out)

                if self.aborting and not pending_out:
                    outcome = "abort"
                    break
                if self.done_sending and not pending_out:
                    if self.halfclose and not self.wrote_eof:
                        sock.shutdown(socket.SHUT_WR)
                        self.wrote_eof = True
                    if self.outstanding() == 0 and not self.halfclose:
                        outcome = "clean"
                        break

                events = selectors.EVENT_READ
                if pending_out and due is None:
                    events |= selectors.EVENT_WRITE
                sel.modify(sock, events)
                timeout = 1.0
                if due is not None:
                    timeout = max(0.0, min(timeout, due - now))
                ready = sel.select(timeout)
                progressed = False
                for _key, mask in ready:
                    if mask & selectors.EVENT_READ:
                        try:
                            data = sock.recv(RECV_CHUNK)
                        except (BlockingIOError, InterruptedError):
                            continue
                        if not data:
                            # End of stream from the server.
                            if self.rbuf:
                                self.stats.error(f"conn {self.conn_id}: EOF inside an echo frame "
                                                 f"({len(self.rbuf)} bytes of it)")
                                outcome = "error"
                            elif self.halfclose and self.wrote_eof and self.outstanding() == 0:
                                outcome = "halfclose"
                            else:
                                self.stats.error(f"conn {self.conn_id}: server closed with "
                                                 f"{self.outstanding()} echoes outstanding")
                                outcome = "error"
                            break
                        self.local["bytes_received"] += len(data)
                        self.rbuf += data
                        progressed = True
                        self.parse()
                    if mask & selectors.EVENT_WRITE:
                        progressed = True  # write_some runs at the top of the loop
                if outcome:
                    break
                if progressed or ready or due is not None:
                    last_progress = time.monotonic()
                elif time.monotonic() - last_progress > STALL_SECONDS:
                    self.stats.error(f"conn {self.conn_id}: stalled {STALL_SECONDS:.0f}s with "
                                     f"{self.outstanding()} echoes outstanding, "
                                     f"{len(self.out) - self.out_pos} writes pending")
                    outcome = "error"
                    break
        except Corrupt:
            # The stream is out of step (a wrong length, or a frame nobody
            # sent): count that frame as corrupted; the rest of this
            # connection's echoes are lost.
            outcome = "error"
            self.local["corrupted"] += 1
            if self.inflight_head < len(self.inflight):
                self.local["received"] += 1
                self.inflight_head += 1
        except OSError as e:
            self.stats.error(f"conn {self.conn_id}: {e}")
            outcome = "error"
        finally:
            sel.close()

        n_out = self.outstanding()
        # Frames queued but never fully written are not 'sent': only count those that were.
        unsent = sum(1 for item in self.out[self.out_pos:] if item[2] is not None)
        n_out_sent = max(0, n_out - unsent)
        if outcome == "abort":
            self.local["random_closes"] += 1
            if self.abort_mid_frame:
                self.local["random_close_mid_frame"] += 1
            if self.abort_rst:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.local["random_close_rst"] += 1
            else:
                self.local["random_close_fin"] += 1
            self.local["abandoned"] += n_out_sent
        else:
            if outcome == "clean":
                self.local["clean_closes"] += 1
            elif outcome == "halfclose":
                self.local["clean_halfcloses"] += 1
            self.local["lost"] += n_out_sent
        try:
            sock.close()
        except OSError:
            pass
        self.stats.merge(self.local)


class Corrupt(Exception):
    pass


def describe_mismatch(seq, got, expected):
    first = next(i for i in range(len(got)) if got[i] != expected[i])
    where = "header" if first < HEADER.size else "body"
    extra = ""
    if len(got) >= HEADER.size:
        c, s = HEADER.unpack_from(got, 0)
        extra = f"; its header says conn {c} seq {s}"
    return f"seq {seq} ({len(got)} bytes): first difference at offset {first} ({where}){extra}"


def worker(index, cfg, payloads, stats, counter, counter_lock):
    rng = random.Random(f"{cfg.seed}:{index}")
    while time.time() < cfg.deadline:
        with counter_lock:
            counter[0] += 1
            conn_id = counter[0]
        ConnectionRun(cfg, payloads, stats, conn_id, rng).run()


def report(stats, cfg, started, finished):
    lines = [
        f"seed: {cfg.seed}",
        f"duration: {finished - started:.1f} s (traffic {cfg.seconds:g} s + drain)",
        f"threads: {cfg.threads}",
        f"connections opened: {stats.connections_opened}",
        f"  clean closes: {stats.clean_closes} (close after all echoes), "
        f"{stats.clean_halfcloses} (shutdown, echoes, EOF)",
        f"  random closes: {stats.random_closes} ({stats.random_close_fin} close, "
        f"{stats.random_close_rst} RST; {stats.random_close_mid_frame} mid-frame)",
        f"  connect failures: {stats.connect_failures}",
        f"messages sent: {stats.sent}",
        f"messages received: {stats.received} ({stats.verified} verified byte for byte)",
        f"lost: {stats.lost}",
        f"corrupted: {stats.corrupted}",
        f"abandoned by client (random closes): {stats.abandoned}",
        f"bytes sent (client to server): {stats.bytes_sent}",
        f"bytes received (server to client): {stats.bytes_received}",
        f"largest message: {stats.max_size_sent} bytes",
        f"split frames: {stats.split_frames} ({stats.split_writes} delayed writes)",
        f"client errors: {stats.errors}",
    ]
    balanced = stats.sent == stats.received + stats.lost + stats.abandoned
    if not balanced:
        lines.append(f"BOOKKEEPING: sent {stats.sent} != received + lost + abandoned "
                     f"{stats.received + stats.lost + stats.abandoned}")
    for s in stats.error_samples:
        lines.append(f"  error: {s}")
    for s in stats.corruption_samples:
        lines.append(f"  corruption: {s}")
    print("\n".join(lines), flush=True)
    return balanced


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--seconds", type=float, required=True, help="how long to start new traffic")
    p.add_argument("--threads", type=int, default=32)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--byte-order", choices=["little", "big"], default="little")
    p.add_argument("--random-close-rate", type=float, default=0.125)
    cfg = p.parse_args()
    if cfg.host not in ("127.0.0.1", "::1", "localhost"):
        p.error("loopback only: --host must be 127.0.0.1, ::1 or localhost")
    if cfg.seed is None:
        cfg.seed = int.from_bytes(os.urandom(4), "little")
    started = time.time()
    cfg.deadline = started + cfg.seconds
    payloads = Payloads(cfg.seed)
    stats = Stats()
    counter = [0]
    counter_lock = threading.Lock()
    threads = [threading.Thread(target=worker, args=(i, cfg, payloads, stats, counter, counter_lock),
                                name=f"soak-{i}", daemon=True)
               for i in range(cfg.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    balanced = report(stats, cfg, started, time.time())
    ok = balanced and stats.lost == 0 and stats.corrupted == 0 and stats.errors == 0
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
