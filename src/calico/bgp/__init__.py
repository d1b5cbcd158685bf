"""calico.bgp."""
