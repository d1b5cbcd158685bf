"""calico_lab: ``calico-lab``, a multi-node Calico cluster in network namespaces (see
docs/design/lab.md).
"""
