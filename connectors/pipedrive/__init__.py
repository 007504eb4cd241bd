"""The pipedrive connector (being built)."""
