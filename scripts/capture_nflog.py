"""Makes tests/unit/dataplane/data/nflog_capture.json: real NFLOG messages from this kernel for
the parser test. Run as root from the checkout: .venv/bin/python scripts/capture_nflog.py OUT.json
(two namespaces calt-flx-<pid>-ca/cb are made and deleted)."""

import json, os, socket, subprocess, sys, threading, time
from calico.lib import netns as lib_netns
from calico.dataplane import nflog

A, B = f"calt-flx-{os.getpid()}-ca", f"calt-flx-{os.getpid()}-cb"


def sh(cmd, inp=None):
    return subprocess.run(
        cmd, shell=True, check=True, input=inp, text=True, capture_output=True
    ).stdout


sh(f"ip netns add {A}; ip netns add {B}")
try:
    sh(f"ip -n {A} link add va type veth peer name vb netns {B}")
    sh(
        f"ip -n {A} addr add 10.9.0.1/24 dev va; ip -n {A} addr add fd00:9::1/64 dev va nodad; ip -n {A} link set va up; ip -n {A} link set lo up"
    )
    sh(
        f"ip -n {B} addr add 10.9.0.2/24 dev vb; ip -n {B} addr add fd00:9::2/64 dev vb nodad; ip -n {B} link set vb up; ip -n {B} link set lo up"
    )
    sh(
        f"ip netns exec {A} nft -f -",
        """
table inet calico {
  limit cali-flowlog { rate 1000/second burst 1000 packets; }
  chain input { type filter hook input priority filter; policy accept;
    meta mark set 0x80000
    tcp dport 80 limit name "cali-flowlog" log group 1 prefix "DI:0123456789ab"
    tcp dport 80 counter drop
    udp dport 81 ct state new limit name "cali-flowlog" log group 1 prefix "AIS:ffffffffffff"
    icmp type echo-request limit name "cali-flowlog" log group 1 prefix "AE:a1b2c3d4e5f6"
    meta l4proto tcp th dport 443 limit name "cali-flowlog" log group 1 prefix "DE:000000000000"
  }
}
""",
    )
    out = []
    ready = threading.Event()

    def reader():
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)
        s.bind((0, 0))
        s.send(
            nflog.config_message(
                1, nflog.bind_attrs(copy_range=128, nlbufsiz=65536, qthresh=1, timeout=1), seq=1
            )
        )
        assert nflog.errors(s.recv(65536)) == [0]
        ready.set()
        s.settimeout(2)
        try:
            while True:
                out.append(s.recv(65536))
        except socket.timeout:
            pass

    t = threading.Thread(target=lambda: lib_netns.call_in(A, reader))
    t.start()
    ready.wait()
    subprocess.run(
        f"ip netns exec {B} timeout 0.3 bash -c 'echo > /dev/tcp/10.9.0.1/80'", shell=True
    )
    sh(f"ip netns exec {B} bash -c 'echo hi > /dev/udp/10.9.0.1/81'")

    def icmp():
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        pkt = bytes([8, 0, 0xF7, 0xFE, 0, 1, 0, 0])  # echo request, checksum precomputed
        s.sendto(pkt, ("10.9.0.1", 0))
        s.close()

    lib_netns.call_in(B, icmp)
    subprocess.run(
        f"ip netns exec {B} timeout 0.3 bash -c 'echo > /dev/tcp/fd00:9::1/443'", shell=True
    )
    t.join()
    raw = [o.hex() for o in out]
    pkts = [p for o in out for p in nflog.parse(o)]
    for p in pkts:
        print(p)
    json.dump(
        {
            "note": "captured from kernel "
            + os.uname().release
            + " by an nft log group 1 rule set (see test)",
            "messages": raw,
        },
        open(sys.argv[1], "w"),
        indent=1,
    )
finally:
    subprocess.run(f"ip netns del {A}; ip netns del {B}", shell=True)
