"""calico.cli."""
