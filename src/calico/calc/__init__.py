"""calico.calc: the calculation graph (datastore updates -> dpapi messages), pure and synchronous.

Entry point: ``calc.graph.CalcGraph``. See docs/design/calc-graph.md.
"""
