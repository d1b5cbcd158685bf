"""calico.agent: the policy agent process (``calico-felix``): config, wiring, health, metrics.

Entry point: ``calico.agent.main:main``. See docs/design/agent.md.
"""
