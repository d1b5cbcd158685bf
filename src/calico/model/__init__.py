"""calico.model."""
