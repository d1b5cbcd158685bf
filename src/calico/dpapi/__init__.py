"""calico.dpapi."""
