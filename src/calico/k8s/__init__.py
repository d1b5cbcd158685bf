"""calico.k8s."""
