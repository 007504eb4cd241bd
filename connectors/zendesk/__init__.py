"""The zendesk connector (being built)."""
