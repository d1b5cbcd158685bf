"""A minimal CRI client (Kubernetes' runtime.v1 RuntimeService over gRPC) for containerd tests.

Only what a kubelet does to a pod's network: RunPodSandbox, PodSandboxStatus, StopPodSandbox,
RemovePodSandbox. The protobuf messages are encoded and decoded by hand (a handful of string,
varint and nested fields), so the only dependency is ``grpcio`` (raw-bytes calls).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import grpc

SERVICE = "/runtime.v1.RuntimeService/"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num: int, value: bytes | str | int) -> bytes:
    if isinstance(value, int):
        return _varint(num << 3) + _varint(value)
    raw = value.encode() if isinstance(value, str) else value
    return _varint((num << 3) | 2) + _varint(len(raw)) + raw


def _map_entries(num: int, mapping: dict[str, str]) -> bytes:
    return b"".join(_field(num, _field(1, k) + _field(2, v)) for k, v in mapping.items())


def decode(data: bytes) -> dict[int, list[Any]]:
    """{field number: [values]}: varints as int, length-delimited fields as bytes."""
    out: dict[int, list[Any]] = {}
    i = 0
    while i < len(data):
        key, i = _read_varint(data, i)
        num, kind = key >> 3, key & 7
        value: int | bytes
        if kind == 0:
            value, i = _read_varint(data, i)
        elif kind == 2:
            size, i = _read_varint(data, i)
            value, i = data[i : i + size], i + size
        elif kind == 1:
            value, i = data[i : i + 8], i + 8
        elif kind == 5:
            value, i = data[i : i + 4], i + 4
        else:
            raise ValueError(f"protobuf wire type {kind} not handled")
        out.setdefault(num, []).append(value)
    return out


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7


class RuntimeService:
    """``grpc`` calls on containerd's socket, raw bytes in and out."""

    def __init__(self, socket_path: str) -> None:
        import grpc  # a test-only dependency

        self.channel = grpc.insecure_channel(f"unix://{socket_path}")

    def _call(self, method: str, request: bytes, timeout: float = 120) -> dict[int, list[Any]]:
        fn: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self.channel.unary_unary(SERVICE + method)
        return decode(fn(request, timeout=timeout))

    def run_pod_sandbox(self, *, name: str, namespace: str, uid: str, log_dir: str) -> str:
        metadata = _field(1, name) + _field(2, uid) + _field(3, namespace) + _field(4, 0)
        config = _field(1, metadata) + _field(2, name) + _field(3, log_dir)
        config += _map_entries(6, {"app": name})
        config += _field(8, _field(1, ""))  # LinuxPodSandboxConfig: no cgroup parent
        reply = self._call("RunPodSandbox", _field(1, config))
        return bytes(reply[1][0]).decode()

    def pod_ip(self, sandbox_id: str) -> str:
        status = decode(self._call("PodSandboxStatus", _field(1, sandbox_id))[1][0])
        network = decode(status[5][0]) if 5 in status else {}
        return bytes(network[1][0]).decode() if 1 in network else ""

    def stop_pod_sandbox(self, sandbox_id: str) -> None:
        self._call("StopPodSandbox", _field(1, sandbox_id))

    def remove_pod_sandbox(self, sandbox_id: str) -> None:
        self._call("RemovePodSandbox", _field(1, sandbox_id))

    def close(self) -> None:
        self.channel.close()
