"""calico.ipam: Calico's block IPAM over etcd (used by the CNI plugin, calicoctl, BGP and the lab).

Modules: ``block`` (pure allocator), ``keys`` (etcd layout), ``pools`` (IPPool view and selection),
``client`` (IPAMClient: CAS retry loops), ``report`` (usage and leak check).
"""
