"""calico.ipam: Calico's block IPAM over etcd (used by the CNI plugin, calicoctl, BGP and the lab).

Modules: ``block`` (pure allocator), ``keys`` (etcd layout), ``pools`` (IPPool view and selection),
``plan`` (the allocation decision, pure), ``view`` (the records it rests on; the per-host cache),
``atomic`` (the one allocation path: each change one etcd transaction), ``client`` (IPAMClient, the
facade for calicoctl and reports), ``report`` (usage and leak check).
"""
