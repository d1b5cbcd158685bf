"""What the CNI server keeps between calls (a fresh plugin process keeps nothing).

* Open datastore connections, one idle pool per datastore config (:func:`calico.cni.store.key`:
  etcd endpoints + TLS files, or the Kubernetes API's): a call borrows a client and gives it back,
  so a served call skips the TCP (and TLS) handshake. A client is used by one call at a time
  (``http.client`` connections are not thread-safe).
* The IPAM records the last call read or wrote per host (:class:`calico.ipam.atomic.Cache`), so
  an ADD in steady state is one transaction (every record it relies on is compared by
  revision in that transaction, so a stale one is never written; a miss returns fresh ones).
* Host veths being deleted in the background. The kernel's veth teardown (≈ 20 ms: the RCU
  grace periods of unregistering two devices) is the bulk of a DEL; in the server it finishes after
  the reply, and any later ADD that could meet its leftovers (the same host veth name, or one of the
  released addresses, whose old host route lives until the veth is gone) waits for it first. A
  fresh process (no server) always deletes synchronously, since it exits right after replying.

:func:`enable` (called by :mod:`calico.cni.server`) switches these on; by default all are off.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Hashable

from calico.datastore.backend import Backend
from calico.ipam.atomic import Cache

_lock = threading.Lock()
_enabled = False
_idle: dict[Hashable, list[Backend]] = {}
_Pending = tuple[str, frozenset[str], threading.Thread]
_deleting: list[_Pending] = []
_caches: dict[Hashable, Cache] = {}
MAX_IDLE = 8


def enable() -> None:
    global _enabled
    _enabled = True


def enabled() -> bool:
    return _enabled


def ipam_cache(store: Hashable) -> Cache | None:
    """The IPAM records remembered for this datastore (server), else None."""
    if not _enabled:
        return None
    with _lock:
        return _caches.setdefault(store, Cache())


def borrow(store: Hashable, connect: Callable[[], Backend]) -> Backend:
    """An idle client for this datastore config (server), else ``connect()``'s new one."""
    with _lock:
        idle = _idle.get(store)
        if idle:
            return idle.pop()
    return connect()


def give_back(store: Hashable, client: Backend) -> None:
    """Give the client back after a call (server: kept open), else close it."""
    if _enabled:
        with _lock:
            idle = _idle.setdefault(store, [])
            if len(idle) < MAX_IDLE:
                idle.append(client)
                return
    client.close()


def delete_later(host_if: str, addresses: list[str], delete: Callable[[], object]) -> bool:
    """Run ``delete`` in the background (server only); False: the caller must run it now."""
    if not _enabled:
        return False
    entry: _Pending

    def run() -> None:
        try:
            delete()
        except Exception as exc:  # the call has been answered: the server's log is all we have
            sys.stderr.write(f"calico: background delete of {host_if} failed: {exc}\n")
        finally:
            with _lock:
                _deleting.remove(entry)

    thread = threading.Thread(target=run, name=f"del-{host_if}", daemon=True)
    entry = (host_if, frozenset(addresses), thread)
    with _lock:
        _deleting.append(entry)
        thread.start()
    return True


def wait_deletes(host_if: str, addresses: list[str]) -> None:
    """Wait for background deletes of ``host_if`` or of a veth that held one of ``addresses``."""
    want = set(addresses)
    with _lock:
        pending = [t for name, ips, t in _deleting if name == host_if or ips & want]
    for thread in pending:
        thread.join()


def wait_all_deletes() -> None:
    """Wait for every background delete (server shutdown)."""
    with _lock:
        pending = [t for _, _, t in _deleting]
    for thread in pending:
        thread.join()
