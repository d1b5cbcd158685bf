"""calico.calc."""
