"""calico.dataplane: dpapi messages -> nftables (one ``table inet calico``) and workload routes.

``loop.InternalDataplane`` receives messages, hands them to managers (convert, no I/O) and applies
through drivers (``nft_table.NftTable``, ``route_table.RouteTable``: diff, atomic apply, sweep).
See docs/design/dataplane.md.
"""
