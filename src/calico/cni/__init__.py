"""calico.cni."""
