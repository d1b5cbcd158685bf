"""calico.lib."""
