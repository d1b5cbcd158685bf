"""Runs nft scripts: in-process through libnftables (ctypes), or ``nft -f -`` as the fallback.

One ``run(script)`` is one netlink transaction: all of it applies or none of it does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
from typing import Protocol

from calico.lib import cmd

logger = logging.getLogger(__name__)

NFT_CTX_OUTPUT_JSON = 1 << 4


class NftError(Exception):
    """nft rejected a script (the message holds nft's error text)."""


class NftRunner(Protocol):
    def run(self, script: str, *, json: bool = False) -> str: ...


class WrongNamespace(RuntimeError):
    """A libnftables context used from a thread in another network namespace than its own."""


def _thread_netns() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


class LibNftables:
    """libnftables.so.1 through ctypes (about 5x cheaper per call than a process).

    The context's netlink socket is opened by ``nft_ctx_new`` and stays in the network namespace
    of the thread that made it, whichever thread runs a command later. A command from a thread in
    another namespace would program the context's namespace, not the caller's, so :meth:`run`
    refuses it (:class:`WrongNamespace`) instead.
    """

    def __init__(self) -> None:
        lib = ctypes.CDLL(ctypes.util.find_library("nftables") or "libnftables.so.1")
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        lib.nft_ctx_output_get_flags.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_get_flags.restype = ctypes.c_uint
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        self._lib = lib
        self._lock = threading.Lock()
        self._netns = _thread_netns()
        self._ctx = lib.nft_ctx_new(0)
        if not self._ctx:
            raise OSError("nft_ctx_new failed")
        lib.nft_ctx_buffer_output(self._ctx)
        lib.nft_ctx_buffer_error(self._ctx)

    def run(self, script: str, *, json: bool = False) -> str:
        if (here := _thread_netns()) != self._netns:
            raise WrongNamespace(
                f"libnftables context opened in network namespace {self._netns} used from "
                f"namespace {here}: it would program {self._netns}; make the context in the "
                "thread (namespace) that uses it"
            )
        with self._lock:
            flags = self._lib.nft_ctx_output_get_flags(self._ctx)
            new = flags | NFT_CTX_OUTPUT_JSON if json else flags & ~NFT_CTX_OUTPUT_JSON
            self._lib.nft_ctx_output_set_flags(self._ctx, new)
            rc = self._lib.nft_run_cmd_from_buffer(self._ctx, script.encode())
            out = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode()
            err = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode()
        if rc != 0:
            raise NftError(err.strip() or f"nft failed (rc {rc})")
        return out


class NftCommand:
    """``nft -f -`` per call (no libnftables, or for running in another namespace)."""

    def __init__(self, netns: str | None = None) -> None:
        self._netns = netns

    def run(self, script: str, *, json: bool = False) -> str:
        # ``nft -j -f -`` prints nothing for list commands: a JSON read is one command in argv.
        argv = ["nft", "-j", *script.split()] if json else ["nft", "-f", "-"]
        try:
            return cmd.run(cmd.netns_argv(self._netns, argv), input=None if json else script).stdout
        except cmd.CmdError as exc:
            raise NftError(exc.stderr) from exc


def default_runner() -> NftRunner:
    try:
        return LibNftables()
    except (OSError, AttributeError) as exc:
        logger.warning("libnftables unavailable (%s); using nft -f -", exc)
        return NftCommand()
