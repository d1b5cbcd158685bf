"""calico.datastore."""
