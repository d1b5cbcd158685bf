"""calico.dpapi: the calc graph -> dataplane contract (frozen messages, ordering, state model).

``messages`` defines what the calculation graph emits and the dataplane consumes; ``state`` is a
pure model that applies a message stream (used by the dataplane's managers' tests and by the
incremental-vs-full-recompute oracle). See docs/design/calc-graph.md for the ordering contract.
"""
