"""Pure parts of the etcd client: the watch body decoder, endpoint lists, covering prefixes."""

from __future__ import annotations

import json
import random
import socket
from pathlib import Path

import pytest

from calico.datastore.config import ConfigError, load
from calico.datastore.etcd import EtcdClient, EtcdUnavailable
from calico.datastore.etcd_watch import _Body
from calico.datastore.syncer import covering


def chunked(payload: bytes, sizes: list[int]) -> bytes:
    out = b""
    while payload:
        n = min(sizes.pop(0), len(payload)) if sizes else len(payload)
        out += b"%x\r\n" % n + payload[:n] + b"\r\n"
        payload = payload[n:]
    return out + b"0\r\n\r\n"


@pytest.mark.parametrize("seed", range(20))
def test_body_reassembles_lines_across_any_chunk_and_read_boundaries(seed: int) -> None:
    rng = random.Random(seed)
    lines = [json.dumps({"n": i, "pad": "x" * rng.randrange(0, 300)}).encode() for i in range(30)]
    payload = b"".join(line + b"\n" for line in lines)
    wire = chunked(payload, [rng.randrange(1, 200) for _ in range(200)])
    body = _Body(chunked=True)
    got: list[bytes] = []
    pos = 0
    while pos < len(wire):
        step = rng.randrange(1, 64)
        body.feed(wire[pos : pos + step])
        pos += step
        while (line := body.line()) is not None:
            got.append(line)
    assert got == lines
    assert body.done


def test_body_without_chunking_reads_to_the_end() -> None:
    body = _Body(chunked=False)
    body.feed(b'{"a":1}\n{"b"')
    assert body.line() == b'{"a":1}'
    assert body.line() is None
    body.feed(b":2}\n")
    assert body.line() == b'{"b":2}'


def test_covering_drops_prefixes_inside_others() -> None:
    assert covering(["/c/a/x/", "/c/a/", "/c/b/", "/c/a/"]) == ["/c/a/", "/c/b/"]


def test_endpoint_list_in_env_and_file(tmp_path: Path) -> None:
    env = {"ETCD_ENDPOINTS": "http://10.0.0.1:2379, http://10.0.0.2:2379,https://10.0.0.3:2379"}
    assert EtcdClient(load("", env=env).endpoints).endpoints == [
        "http://10.0.0.1:2379",
        "http://10.0.0.2:2379",
        "https://10.0.0.3:2379",
    ]
    with pytest.raises(ConfigError, match=r"ETCD_ENDPOINTS: etcd endpoint '10\.0\.0\.2:2379'"):
        load("", env={"ETCD_ENDPOINTS": "http://10.0.0.1:2379,10.0.0.2:2379"})
    cfg = tmp_path / "calicoctl.cfg"
    cfg.write_text(
        "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\n"
        "spec:\n  etcdEndpoints: http://10.0.0.1:2379,http://10.0.0.2:x\n"
    )
    with pytest.raises(ConfigError, match=r"etcdEndpoints: etcd endpoint 'http://10\.0\.0\.2:x'"):
        load(str(cfg), env={})
    with pytest.raises(ConfigError, match="key file '/k' given without a certificate"):
        load("", env={"ETCD_KEY_FILE": "/k"})


def test_a_member_list_of_dead_members_names_each() -> None:
    ports = []
    for _ in range(2):
        with socket.socket() as s:  # a port nothing listens on (closed again at once)
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    client = EtcdClient([f"http://127.0.0.1:{p}" for p in ports], timeout=1)
    with pytest.raises(EtcdUnavailable) as err:
        client.get("/x")
    for p in ports:
        assert f"http://127.0.0.1:{p}: ConnectionRefusedError" in str(err.value)
