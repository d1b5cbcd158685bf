"""NetworkPassthru: IPPools and Nodes straight to the dataplane (Felix's DataplanePassthru and
VXLANResolver, which need no joins).

* every valid IPPool (disabled ones included) -> ``IPAMPoolUpdate`` / ``IPAMPoolRemove``;
* every valid Node -> ``HostMetadataUpdate`` (addresses, tunnel addresses, VXLAN MAC) /
  ``HostMetadataRemove``;
* every Node with an IPv4 address, a VXLAN tunnel address and a VXLAN MAC ->
  ``VXLANTunnelEndpointUpdate`` (this node's own too: it configures ``vxlan.calico``), else
  ``VXLANTunnelEndpointRemove``.

The work per change is one object. The sequencer suppresses values equal to what was sent.
"""

from __future__ import annotations

from calico.calc import event_sequencer
from calico.calc import network_validation as nv


class NetworkPassthru:
    def __init__(self, sequencer: event_sequencer.EventSequencer) -> None:
        self._seq = sequencer

    def on_pool(self, name: str, pool: nv.PoolData | None) -> None:
        self._seq.on_pool(name, pool.pool if pool else None)

    def on_node(self, name: str, node: nv.NodeData | None) -> None:
        self._seq.on_host(name, node.host_metadata() if node else None)
        self._seq.on_vtep(name, node.vtep() if node else None)
