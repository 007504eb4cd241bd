"""The dynamics connector (being built)."""
