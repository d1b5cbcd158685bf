"""calico-typha: one datastore syncer fanned out to many agents (see docs/design/typha.md)."""
