"""calico.selector."""
