"""calico.lab."""
