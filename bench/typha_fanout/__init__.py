"""bench.typha_fanout: datastore load and change spread with and without Typha."""
