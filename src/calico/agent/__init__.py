"""calico.agent."""
