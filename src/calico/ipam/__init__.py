"""calico.ipam."""
