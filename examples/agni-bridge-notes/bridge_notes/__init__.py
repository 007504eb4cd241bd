"""An example connector for the Agni CRM Bridge: each call becomes one note in a notes service, exactly once."""

from bridge_notes.connector import NotesConfig, NotesConnector

__all__ = ["NotesConfig", "NotesConnector"]
