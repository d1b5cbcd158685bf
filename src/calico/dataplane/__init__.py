"""calico.dataplane."""
