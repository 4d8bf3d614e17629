#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Control-protocol probe for the viaductd lab test (tests/lab/test_daemon.sh).

Speaks the protocol of src/ctl/proto.h with struct/socket only, so it tests the daemon independently of
the library. Every subcommand prints what it saw and exits non-zero when the daemon misbehaved.

  open [--mode auto|direct|steered] [--port P] [--queue Q] [--hold]  open one endpoint, check its fds
                                  (4, or 5 with a TX tap: then its device name in tap_name)
  tap-send --dst-ip IP --dst-mac MAC --dport P [--count N]  open an endpoint, write N UDP frames to its
                                  TX tap (fails without one)
  hostile                         malformed / hostile messages: error replies, daemon keeps serving
  steer-rx --count N [--sizes ..] open a steered endpoint, print its port, read N frames from the ring
  stat                            print the STAT reply as JSON
  neigh IP                        resolve IP (prints mac or the error)
  reserve PROTO PORT [--hold]     PORT_RESERVE
  stall                           send requests without reading replies (back-pressure), then hold
  ports-hold                      EP_PORTS_ADD a batch, EP_PORTS_DEL it with holds (one port not ours
                                  among them; then a quiet one): each port held on its own
  ports-burst --count N [--keep]  N ephemeral TCP ports in back-to-back batches of 64, each then freed
                                  (--keep: not the last one)
Common: --socket PATH, --uid U --gid G (drop to that identity before connecting).
"""
import argparse
import errno
import json
import mmap
import os
import select
import socket
import struct
import sys
import time

MAGIC = 0x54434456
VERSION = 1
REPLY = 0x8000
EP_OPEN, EP_CLOSE, NEIGH, STAT, PORT_RESERVE, PORT_RELEASE = 1, 2, 3, 4, 5, 6
EP_PORTS_ADD, EP_PORTS_DEL, PORTS_QUIET, PORTS_MAX = 9, 10, 1, 64
HDR = struct.Struct("<IHHIIiI")
MODES = {"auto": 0, "direct": 1, "steered": 2}
PAGE = mmap.PAGESIZE


def hdr(type_, payload_len, seq=1, magic=MAGIC, version=VERSION, length=None, status=0, nfds=0):
    if length is None:
        length = HDR.size + payload_len
    return HDR.pack(magic, version, type_, length, seq, status, nfds)


def ep_open_req(ifname=b"", ip=b"\0\0\0\0", port=0, mode=0, queue=-1, ring_frames=0, steer=0):
    return (ifname.ljust(16, b"\0")[:16] + ip + struct.pack(">H", port) + struct.pack("<BBiII", mode, 0, queue,
            ring_frames, steer))


def recv_exact(s, n, timeout=5.0):
    buf = b""
    fds = []
    deadline = time.monotonic() + timeout
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no reply")
        r, _, _ = select.select([s], [], [], left)
        if not r:
            continue
        data, anc, flags, _ = s.recvmsg(n - len(buf), socket.CMSG_SPACE(4 * 5))
        if not data:
            raise EOFError("connection closed by daemon")
        for level, typ, cdata in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                fds += list(struct.unpack("%di" % (len(cdata) // 4), cdata[: len(cdata) - len(cdata) % 4]))
        buf += data
    return buf, fds


def read_reply(s, timeout=5.0):
    """Returns (type, seq, status, payload, fds)."""
    h, fds = recv_exact(s, HDR.size, timeout)
    magic, version, type_, length, seq, status, nfds = HDR.unpack(h)
    if magic != MAGIC or version != VERSION or length < HDR.size or length > 65536:
        raise ValueError("bad reply header %r" % (HDR.unpack(h),))
    payload, fds2 = recv_exact(s, length - HDR.size, timeout) if length > HDR.size else (b"", [])
    fds += fds2
    if len(fds) != nfds:
        raise ValueError("reply announces %d fds, %d arrived" % (nfds, len(fds)))
    return type_, seq, status, payload, fds


def call(s, type_, payload=b"", seq=7, timeout=5.0):
    s.sendall(hdr(type_, len(payload), seq) + payload)
    t, rseq, status, p, fds = read_reply(s, timeout)
    if t != (type_ | REPLY) or rseq != seq:
        raise ValueError("reply type %#x seq %d for request %d seq %d" % (t, rseq, type_, seq))
    return status, p, fds


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


EP_REP = struct.Struct("<II16s6sBx4s2s2xIIIIIIIIIIIIIII")  # ... tx_meta_len, tx_offloads, tap_tx_max
TUNGETIFF = 0x800454D2  # _IOR('T', 210, unsigned int)


def parse_ep_rep(p):
    (ep_id, ifindex, ifname, mac, rx_mode, ip, port, prefix, mtu, queue, frame_size, umem_frames, rx_frames,
     rx_ring, tx_ring, fill_ring, comp_ring, steer_bytes, stats_bytes, tx_meta_len, tx_offloads,
     tap_tx_max) = EP_REP.unpack(p)
    return dict(ep_id=ep_id, ifindex=ifindex, ifname=ifname.rstrip(b"\0").decode(), mac=mac.hex(":"),
                rx_mode=rx_mode, ip=socket.inet_ntoa(ip), port=struct.unpack(">H", port)[0], prefix=prefix, mtu=mtu,
                queue=queue, frame_size=frame_size, umem_frames=umem_frames, rx_frames=rx_frames, rx_ring=rx_ring,
                tx_ring=tx_ring, fill_ring=fill_ring, comp_ring=comp_ring, steer_ring_bytes=steer_bytes,
                stats_bytes=stats_bytes, tx_meta_len=tx_meta_len, tx_offloads=tx_offloads, tap_tx_max=tap_tx_max)


def fd_kind(fd):
    return os.readlink("/proc/self/fd/%d" % fd)


def tap_name(fd):
    """The name of the tap device a /dev/net/tun fd is attached to."""
    import fcntl
    ifr = fcntl.ioctl(fd, TUNGETIFF, b"\0" * 40)
    return ifr[:16].rstrip(b"\0").decode()


def check_ep_fds(rep, fds):
    """The four fds in proto.h order, of the right kinds and usable by this (possibly unprivileged) process,
    and a fifth, the TX tap, exactly when tap_tx_max says so."""
    kinds = [fd_kind(f) for f in fds]
    want = 5 if rep["tap_tx_max"] else 4
    assert len(fds) == want, "want %d fds (tap_tx_max %d), got %d" % (want, rep["tap_tx_max"], len(fds))
    if want == 5:
        assert kinds[4] == "/dev/net/tun", kinds
        assert os.get_blocking(fds[4]) is False, "TX tap fd is blocking"
        rep["tap_name"] = tap_name(fds[4])
    assert kinds[0].startswith("/memfd:viaduct-umem"), kinds
    assert kinds[1].startswith("socket:"), kinds
    assert kinds[2] == "anon_inode:bpf-map", kinds
    assert kinds[3].startswith("/memfd:viaduct-ep-stats"), kinds
    umem_len = rep["umem_frames"] * rep["frame_size"]
    assert os.fstat(fds[0]).st_size == umem_len, (os.fstat(fds[0]).st_size, umem_len)
    umem = mmap.mmap(fds[0], umem_len, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    umem[0:4] = b"test"
    umem.close()
    # The memfd is sealed against resizing: the daemon's mapping can never be truncated under it.
    try:
        os.ftruncate(fds[0], 4096)
        raise AssertionError("UMEM memfd could be shrunk")
    except PermissionError:
        pass
    st = mmap.mmap(fds[3], rep["stats_bytes"], mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    st[0:8] = struct.pack("<Q", 42)  # tx_frames, visible in STAT
    st.close()
    ring = Ring(fds[2], rep["steer_ring_bytes"])
    ring.close()
    return kinds


class Ring:
    """Consumer side of a BPF ringbuf map: consumer page rw at 0, producer page + data (twice) ro after."""

    BUSY, DISCARD, HDR = 1 << 31, 1 << 30, 8

    def __init__(self, fd, size):
        self.size = size
        self.cons = mmap.mmap(fd, PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self.prod = mmap.mmap(fd, PAGE + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=PAGE)
        # Data pages must not be writable by the consumer: isolation of the steering path.
        try:
            mmap.mmap(fd, PAGE + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=PAGE)
            raise AssertionError("ring data mapped writable")
        except PermissionError:
            pass

    def poll(self):
        out = []
        c = struct.unpack_from("<Q", self.cons, 0)[0]
        p = struct.unpack_from("<Q", self.prod, 0)[0]
        while c < p:
            off = PAGE + (c & (self.size - 1))
            h = struct.unpack_from("<I", self.prod, off)[0]
            if h & self.BUSY:
                break
            n = h & ~(self.BUSY | self.DISCARD)
            if not h & self.DISCARD:
                out.append(bytes(self.prod[off + self.HDR: off + self.HDR + n]))
            c += (n + self.HDR + 7) & ~7
            struct.pack_into("<Q", self.cons, 0, c)
        return out

    def close(self):
        self.cons.close()
        self.prod.close()


def drop_privs(a):
    if a.gid is not None:
        os.setgroups([])
        os.setgid(a.gid)
    if a.uid is not None:
        os.setuid(a.uid)


def cmd_open(a):
    s = connect(a.socket)
    status, p, fds = call(s, EP_OPEN, ep_open_req(a.ifname.encode(), port=a.port, mode=MODES[a.mode], queue=a.queue,
                                                 ring_frames=a.ring_frames, steer=a.steer_bytes))
    if status:
        print(json.dumps({"status": status, "reason": p.rstrip(b"\0").decode(errors="replace")}))
        return 3
    rep = parse_ep_rep(p)
    rep["fd_kinds"] = check_ep_fds(rep, fds)
    rep["pid"] = os.getpid()
    print(json.dumps(rep), flush=True)
    if a.hold:
        print("ready", flush=True)
        while True:
            time.sleep(1)
    if a.close:
        status, p, _ = call(s, EP_CLOSE, struct.pack("<I", rep["ep_id"]), seq=8)
        assert status == 0, status
        status, p, _ = call(s, EP_CLOSE, struct.pack("<I", rep["ep_id"]), seq=9)
        assert status == -errno.ENOENT, status
    return 0


def csum16(b):
    if len(b) % 2:
        b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while t >> 16:
        t = (t & 0xFFFF) + (t >> 16)
    return ~t & 0xFFFF


def udp_frame(src_mac, dst_mac, src_ip, dst_ip, sport, dport, payload):
    """Ethernet + IPv4 (DF, TTL 64) + UDP, both checksums complete (RFC 791, RFC 768)."""
    udp_len = 8 + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0, 0x4000, 64, socket.IPPROTO_UDP, 0, src_ip, dst_ip)
    ip = ip[:10] + struct.pack("!H", csum16(ip)) + ip[12:]
    pseudo = src_ip + dst_ip + struct.pack("!BBH", 0, socket.IPPROTO_UDP, udp_len)
    udp = struct.pack("!HHHH", sport, dport, udp_len, 0) + payload
    c = csum16(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", c) + udp[8:]
    return dst_mac + src_mac + b"\x08\x00" + ip + udp


def cmd_tap_send(a):
    """Opens an endpoint and writes --count UDP frames to its TX tap (fd [4]), to dst ip:port at dst MAC."""
    s = connect(a.socket)
    status, p, fds = call(s, EP_OPEN, ep_open_req())
    if status:
        print(json.dumps({"status": status, "reason": p.rstrip(b"\0").decode(errors="replace")}))
        return 3
    rep = parse_ep_rep(p)
    check_ep_fds(rep, fds)
    if len(fds) != 5:
        print(json.dumps({"error": "no TX tap", "fds": len(fds), "tap_tx_max": rep["tap_tx_max"]}))
        return 4
    mac = bytes.fromhex(rep["mac"].replace(":", ""))
    dst_mac = bytes.fromhex(a.dst_mac.replace(":", ""))
    sent = 0
    for i in range(a.count):
        fr = udp_frame(mac, dst_mac, socket.inet_aton(rep["ip"]), socket.inet_aton(a.dst_ip), rep["port"], a.dport,
                       b"viaduct-tap %d" % i)
        assert len(fr) <= rep["tap_tx_max"]
        sent += os.write(fds[4], fr) == len(fr)
        time.sleep(0.01)
    print(json.dumps({"sent": sent, "tap_name": rep["tap_name"], "tap_tx_max": rep["tap_tx_max"]}), flush=True)
    if sent != a.count:
        return 5
    if a.until_gone:
        # The endpoint stays open; frames keep going to the tap until a write fails (the daemon ended it).
        t0 = time.monotonic()
        while time.monotonic() - t0 < a.until_gone:
            try:
                os.write(fds[4], fr)
            except OSError as e:
                print(json.dumps({"gone_after_s": round(time.monotonic() - t0, 2), "errno": e.errno}), flush=True)
                return 0
            time.sleep(0.1)
        print(json.dumps({"error": "tap still writable after %s s" % a.until_gone}), flush=True)
        return 6
    return 0


def expect(name, status, want, results):
    ok = status == want
    results.append(ok)
    print("%s %s: status %s (want %s)" % ("ok  " if ok else "FAIL", name, status, want))


def closed_by_daemon(s):
    s.settimeout(3)
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, socket.timeout):
        return False


def cmd_hostile(a):
    res = []
    good = ep_open_req()

    # Framing-lost cases: error reply, then the daemon closes the connection.
    for name, msg in [
        ("bad magic", hdr(STAT, 0, magic=0xdeadbeef)),
        ("length below header", hdr(STAT, 0, length=10)),
        ("huge length", hdr(STAT, 0, length=1 << 30)),
    ]:
        s = connect(a.socket)
        s.sendall(msg)
        _, _, status, _, _ = read_reply(s)
        expect(name, status, -errno.EPROTO, res)
        c = closed_by_daemon(s)
        res.append(c)
        print("%s %s: connection closed after framing error" % ("ok  " if c else "FAIL", name))
        s.close()

    # Recoverable cases, all on one connection that must keep working.
    s = connect(a.socket)
    cases = [
        ("wrong version", hdr(STAT, 0, version=2), -errno.EPROTONOSUPPORT),
        ("unknown type", hdr(99, 0), -errno.EBADMSG),
        ("reply bit in request", hdr(STAT | REPLY, 0), -errno.EBADMSG),
        ("nonzero status in request", hdr(STAT, 0, status=-1), -errno.EBADMSG),
        ("bad rx_mode enum", hdr(EP_OPEN, len(good)) + ep_open_req(mode=7), -errno.EBADMSG),
        ("ifname not NUL-terminated", hdr(EP_OPEN, len(good)) + b"A" * 16 + good[16:], -errno.EBADMSG),
        ("short ep-open payload", hdr(EP_OPEN, 8) + good[:8], -errno.EBADMSG),
        ("long ep-open payload", hdr(EP_OPEN, len(good) + 4) + good + b"xxxx", -errno.EBADMSG),
        ("ring_frames not a power of two", hdr(EP_OPEN, len(good)) + ep_open_req(ring_frames=100), -errno.EBADMSG),
        ("steer ring too small", hdr(EP_OPEN, len(good)) + ep_open_req(steer=4096), -errno.EBADMSG),
        ("unknown interface", hdr(EP_OPEN, len(good)) + ep_open_req(ifname=b"nosuch0"), -errno.ENODEV),
        ("queue out of range", hdr(EP_OPEN, len(good)) + ep_open_req(queue=63), -errno.EINVAL),
        ("foreign address", hdr(EP_OPEN, len(good)) + ep_open_req(ip=socket.inet_aton("1.2.3.4")),
         -errno.EADDRNOTAVAIL),
        ("bad port proto", hdr(PORT_RESERVE, 8) + struct.pack("<I", 0) + b"\0\0" + bytes([1, 0]), -errno.EBADMSG),
        ("close unknown endpoint", hdr(EP_CLOSE, 4) + struct.pack("<I", 12345), -errno.ENOENT),
        ("release unowned port", hdr(PORT_RELEASE, 8) + struct.pack("<I", 0) + struct.pack(">H", 9) + bytes([17, 0]),
         -errno.ENOENT),
    ]
    for name, msg, want in cases:
        s.sendall(msg)
        _, _, status, p, fds = read_reply(s)
        expect(name, status, want, res)
        if status < 0 and (not p or p[-1:] != b"\0"):
            res.append(False)
            print("FAIL %s: reason text not NUL-terminated" % name)
    # Several requests in one write, and one request split over several writes: framing holds.
    s.sendall(hdr(STAT, 0, seq=21) + hdr(STAT, 0, seq=22))
    seqs = [read_reply(s)[1], read_reply(s)[1]]
    res.append(seqs == [21, 22])
    print("%s pipelined requests: seqs %s" % ("ok  " if seqs == [21, 22] else "FAIL", seqs))
    msg = hdr(STAT, 0, seq=23)
    for i in range(len(msg)):
        s.send(msg[i:i + 1])
        time.sleep(0.002)
    seq = read_reply(s)[1]
    res.append(seq == 23)
    print("%s byte-by-byte request: seq %d" % ("ok  " if seq == 23 else "FAIL", seq))
    status, _, _ = call(s, STAT)
    expect("stat after hostile messages", status, 0, res)
    # Descriptors sent to the daemon are not accepted (and must not break anything).
    r, w = os.pipe()
    s.sendmsg([hdr(STAT, 0, seq=31)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", r))])
    os.close(r)
    os.close(w)
    _, seq, status, _, _ = read_reply(s)
    expect("stat carrying an unsolicited fd", status, 0, res)
    s.close()

    # A partial message followed by a hang-up.
    s = connect(a.socket)
    s.sendall(hdr(EP_OPEN, len(good))[:10])
    s.close()
    # Many connections at once: the daemon caps them and keeps serving.
    many = []
    for _ in range(200):
        try:
            many.append(connect(a.socket))
        except OSError:
            break
    for m in many:
        m.close()
    time.sleep(0.2)
    s = connect(a.socket)
    status, _, _ = call(s, STAT)
    expect("stat after 200 connections", status, 0, res)
    s.close()
    failed = res.count(False)
    print("hostile: %d checks, %d failed" % (len(res), failed))
    return 1 if failed else 0


def cmd_steer_rx(a):
    s = connect(a.socket)
    status, p, fds = call(s, EP_OPEN, ep_open_req(mode=MODES["steered"], steer=a.steer_bytes))
    if status:
        print("open failed %d" % status)
        return 3
    rep = parse_ep_rep(p)
    assert rep["rx_mode"] == 2 and rep["rx_ring"] == 0 and rep["rx_frames"] == 0, rep
    ring = Ring(fds[2], rep["steer_ring_bytes"])
    print(json.dumps({"port": rep["port"], "ep_id": rep["ep_id"], "uid": os.getuid()}), flush=True)
    got = []
    deadline = time.monotonic() + a.timeout
    while len(got) < a.count and time.monotonic() < deadline:
        r, _, _ = select.select([fds[2]], [], [], 0.1)  # the ring fd is pollable
        got += ring.poll()
    bad = 0
    for rec in got:
        length, rxq = struct.unpack_from("<II", rec, 0)
        frame = rec[8: 8 + length]
        eth_type = struct.unpack_from(">H", frame, 12)[0]
        dport = struct.unpack_from(">H", frame, 14 + 20 + 2)[0]
        payload = frame[42:]
        ok = (eth_type == 0x0800 and dport == rep["port"] and frame[0:6] == bytes.fromhex(rep["mac"].replace(":", ""))
              and payload == bytes([len(payload) & 0xff]) * len(payload))
        bad += not ok
        print("frame len %d queue %d payload %d %s" % (length, rxq, len(payload), "ok" if ok else "BAD"))
    print("received %d of %d, %d bad" % (len(got), a.count, bad))
    return 0 if len(got) == a.count and not bad else 1


STAT_IF = struct.Struct("<16sI4sIIII7Q")  # ... too_big, held
STAT_EP = struct.Struct("<III16s4s2sBxI8x7Q14QII")  # lib: 6 counters, sock_tcp/udp/fallback, 4 lent-TX, tx_tap; n_ports
STAT_PORT = struct.Struct("<II2sBBI")
STAT_SPARES = struct.Struct("<IIIIQIIIIII")  # vd_ctl_stat_spares, one per interface after the ports


def stat(path):
    s = connect(path)
    status, p, _ = call(s, STAT)
    s.close()
    assert status == 0, status
    n_if, n_ep, pid, n_ports = struct.unpack_from("<IIII", p, 0)
    off = 16
    out = {"daemon_pid": pid, "ifaces": [], "eps": []}
    for _ in range(n_if):
        v = STAT_IF.unpack_from(p, off)
        off += STAT_IF.size
        out["ifaces"].append(dict(ifname=v[0].rstrip(b"\0").decode(), ifindex=v[1], ip=socket.inet_ntoa(v[2]), mtu=v[3],
                                  queues=v[4], xdp_mode=v[5], passed=v[7], malformed=v[8], steered=v[9],
                                  redirected=v[10], ring_full=v[11], too_big=v[12]))
    for _ in range(n_ep):
        v = STAT_EP.unpack_from(p, off)
        off += STAT_EP.size
        out["eps"].append(dict(ep_id=v[0], pid=v[1], uid=v[2], ifname=v[3].rstrip(b"\0").decode(),
                               ip=socket.inet_ntoa(v[4]), port=struct.unpack(">H", v[5])[0], rx_mode=v[6], queue=v[7],
                               rx_redirected=v[8], rx_steered=v[9], rx_bytes=v[10], rx_dropped=v[11],
                               xsk_rx_dropped=v[12], xsk_rx_ring_full=v[13], xsk_tx_invalid=v[14],
                               lib_tx_frames=v[15], tx_lent=v[24], tx_lend_refused=v[25], tx_att_frames=v[26],
                               tx_att_pieces=v[27], tx_tap=v[28], n_ports=v[29]))
    out["ports"] = []
    for _ in range(n_ports):
        v = STAT_PORT.unpack_from(p, off)
        off += STAT_PORT.size
        out["ports"].append(dict(ep_id=v[0], ifindex=v[1], port=struct.unpack(">H", v[2])[0], proto=v[3],
                                 flags=v[4], hold_left_ms=v[5]))
    if off < len(p):  # the spares section (a daemon before it ends the reply here)
        for f in out["ifaces"]:
            v = STAT_SPARES.unpack_from(p, off)
            off += STAT_SPARES.size
            f["spares"] = dict(zip(("ifindex", "spare_eps", "ring_jobs", "spare_umems", "spare_umem_bytes",
                                    "pool_tcp", "pool_tcp_target", "pool_udp", "pool_udp_target", "held_tcp",
                                    "held_udp"), v))
    assert off == len(p), (off, len(p))
    return out


def cmd_stat(a):
    print(json.dumps(stat(a.socket)))
    return 0


def cmd_neigh(a):
    s = connect(a.socket)
    t0 = time.monotonic()
    status, p, _ = call(s, NEIGH, struct.pack("<I", 0) + socket.inet_aton(a.ip), timeout=10)
    dt = time.monotonic() - t0
    if status:
        print(json.dumps({"status": status, "secs": round(dt, 3)}))
    else:
        mac, _, hop = struct.unpack("<6sH4s", p)
        print(json.dumps({"status": 0, "mac": mac.hex(":"), "next_hop": socket.inet_ntoa(hop), "secs": round(dt, 3)}))
    return 0


def cmd_reserve(a):
    s = connect(a.socket)
    proto = {"udp": 17, "tcp": 6}[a.proto]
    status, p, _ = call(s, PORT_RESERVE, struct.pack("<I", 0) + struct.pack(">H", a.port) + bytes([proto, 0]))
    port = struct.unpack(">H", p[:2])[0] if status == 0 else 0
    print(json.dumps({"status": status, "port": port}), flush=True)
    if status == 0 and a.hold:
        print("ready", flush=True)
        while True:
            time.sleep(1)
    if status == 0 and a.release:
        status, _, _ = call(s, PORT_RELEASE, struct.pack("<I", 0) + struct.pack(">H", port) + bytes([proto, 0]), seq=9)
        print(json.dumps({"release": status}))
    return 0


def cmd_stall(a):
    """Floods STAT requests and never reads a reply: the daemon must stop reading us, not stall others."""
    s = connect(a.socket)
    s.setblocking(False)
    sent = 0
    msg = hdr(STAT, 0)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3:
        try:
            s.send(msg)
            sent += 1
        except BlockingIOError:
            break
    print(json.dumps({"sent": sent}), flush=True)
    print("ready", flush=True)
    while True:
        time.sleep(1)


def ports_req(ep_id, proto, count, ports=(), flags=0, hold_ms=0):
    """struct vd_ctl_ep_ports_req: ports in network order, the rest of the array 0."""
    arr = list(ports) + [0] * (PORTS_MAX - len(ports))
    return struct.pack("<IBBHI", ep_id, proto, flags, count, hold_ms) + struct.pack(">%dH" % PORTS_MAX, *arr)


def cmd_ports_hold(a):
    """EP_PORTS_DEL with holds, the batched form: every port is held on its own, a port the endpoint does
    not have fails alone (the request's status, the others held all the same), and the endpoint's port
    count follows. Then a quiet one: no reply, held all the same. Prints a JSON summary, exits non-zero on
    any difference."""
    s = connect(a.socket)
    status, p, fds = call(s, EP_OPEN, ep_open_req(mode=MODES["steered"]))
    assert status == 0, status
    for f in fds:
        os.close(f)
    rep = parse_ep_rep(p)
    ep, tcp = rep["ep_id"], 6
    status, p, _ = call(s, EP_PORTS_ADD, ports_req(ep, tcp, 8), seq=8)
    assert status == 0, status
    n = struct.unpack_from("<H", p, 0)[0]
    ports = list(struct.unpack_from(">%dH" % n, p, 4))
    assert n == 8 and 0 not in ports, ports
    foreign = next(q for q in range(1024, 65536) if q not in ports)
    batch = ports[:6] + [foreign] + ports[6:7]
    status, _, _ = call(s, EP_PORTS_DEL, ports_req(ep, tcp, len(batch), batch, hold_ms=a.hold_ms), seq=9)
    out = {"ports": ports, "foreign": foreign, "del_status": status}

    def look():
        d = stat(a.socket)
        held = sorted(q["port"] for q in d["ports"] if q["proto"] == tcp and q["flags"] & 2 and q["hold_left_ms"] > 0)
        mine = sorted(q["port"] for q in d["ports"] if q["proto"] == tcp and not q["flags"] & 2 and q["ep_id"] == ep)
        n_ports = next(e["n_ports"] for e in d["eps"] if e["ep_id"] == ep)
        return held, mine, n_ports

    def kernel_refused(q):
        k = socket.socket()
        try:
            k.bind((rep["ip"], q))
            return False
        except OSError as e:
            return e.errno == errno.EADDRINUSE
        finally:
            k.close()

    held, mine, n_ports = look()
    out.update(held_after_del=held, still_ours=mine, n_ports=n_ports)
    ok = (status == -errno.ENOENT and all(q in held for q in ports[:7]) and mine == [ports[7]] and n_ports == 1
          and all(kernel_refused(q) for q in ports))
    # Quiet: no reply when it went well; the STAT reply below would be preceded by one otherwise (call
    # checks that the first reply is STAT's).
    s.sendall(hdr(EP_PORTS_DEL, 140, seq=10) + ports_req(ep, tcp, 1, ports[7:], flags=PORTS_QUIET, hold_ms=a.hold_ms))
    status, _, _ = call(s, STAT, seq=11)
    held, mine, n_ports = look()
    out.update(quiet_held=ports[7] in held, n_ports_after_quiet=n_ports)
    ok = ok and status == 0 and ports[7] in held and mine == [] and n_ports == 0
    out["ok"] = ok
    print(json.dumps(out), flush=True)
    s.close()
    return 0 if ok else 1


def cmd_ports_burst(a):
    """A burst of ephemeral TCP ports faster than the daemon's idle refill (batches of 64 back to back, as a
    connect loop's library asks for them, without the loop's timing), each batch freed without a hold right
    after it came (an endpoint owns at most VD_CTL_EP_PORTS_MAX at once). Prints {"taken": n, ...}; exits
    non-zero unless all were given and freed."""
    s = connect(a.socket)
    status, p, fds = call(s, EP_OPEN, ep_open_req(mode=MODES["steered"]))
    assert status == 0, status
    for f in fds:
        os.close(f)
    ep, tcp = parse_ep_rep(p)["ep_id"], 6
    taken, seq, status, freed = 0, 8, 0, 0
    while taken < a.count and status == 0 and freed == 0:
        status, p, _ = call(s, EP_PORTS_ADD, ports_req(ep, tcp, min(PORTS_MAX, a.count - taken)), seq=seq)
        if status == 0:
            n = struct.unpack_from("<H", p, 0)[0]
            if not (a.keep and taken + n >= a.count):
                freed, _, _ = call(s, EP_PORTS_DEL, ports_req(ep, tcp, n, struct.unpack_from(">%dH" % n, p, 4)),
                                   seq=seq + 1)
            taken += n
        seq += 2
    print(json.dumps({"taken": taken, "add_status": status, "freed_status": freed}), flush=True)
    s.close()
    return 0 if taken == a.count and freed == 0 else 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--uid", type=int)
    ap.add_argument("--gid", type=int)
    sub = ap.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("open")
    o.add_argument("--mode", default="auto", choices=MODES)
    o.add_argument("--port", type=int, default=0)
    o.add_argument("--queue", type=int, default=-1)
    o.add_argument("--ifname", default="")
    o.add_argument("--ring-frames", type=int, default=0)
    o.add_argument("--steer-bytes", type=int, default=0)
    o.add_argument("--hold", action="store_true")
    o.add_argument("--close", action="store_true")
    ts = sub.add_parser("tap-send")
    ts.add_argument("--dst-ip", required=True)
    ts.add_argument("--dst-mac", required=True)
    ts.add_argument("--dport", type=int, required=True)
    ts.add_argument("--count", type=int, default=3)
    ts.add_argument("--until-gone", type=float, default=0, help="then keep writing until a write fails "
                    "(at most this many seconds)")
    sub.add_parser("hostile")
    r = sub.add_parser("steer-rx")
    r.add_argument("--count", type=int, required=True)
    r.add_argument("--steer-bytes", type=int, default=0)
    r.add_argument("--timeout", type=float, default=10)
    sub.add_parser("stat")
    n = sub.add_parser("neigh")
    n.add_argument("ip")
    rs = sub.add_parser("reserve")
    rs.add_argument("proto", choices=["udp", "tcp"])
    rs.add_argument("port", type=int)
    rs.add_argument("--hold", action="store_true")
    rs.add_argument("--release", action="store_true")
    sub.add_parser("stall")
    ph = sub.add_parser("ports-hold")
    ph.add_argument("--hold-ms", type=int, default=60000)
    pb = sub.add_parser("ports-burst")
    pb.add_argument("--count", type=int, required=True)
    pb.add_argument("--keep", action="store_true", help="the last batch is not freed: the endpoint keeps it "
                    "until the probe exits (then held, as after a kill): no port request follows the last take")
    a = ap.parse_args()
    drop_privs(a)
    return {"open": cmd_open, "hostile": cmd_hostile, "steer-rx": cmd_steer_rx, "stat": cmd_stat,
            "neigh": cmd_neigh, "reserve": cmd_reserve, "stall": cmd_stall, "ports-hold": cmd_ports_hold,
            "ports-burst": cmd_ports_burst, "tap-send": cmd_tap_send}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
