"""calico.node."""
