"""Local mode: the whole platform on one machine with the real code paths (moto, local API, agents)."""
