"""calico.controllers."""
