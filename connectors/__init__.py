"""Built-in connectors. Nothing imports this package directly: they load through the
``agni_bridge.connectors`` entry points, exactly like third-party connectors.

A connector with parts is a package (``salesforce/``, ``hubspot/``) whose ``__init__`` exports the class
the entry point names; a connector that is one idea stays one module (``jsonl.py``, ``webhook_forward.py``).
What several connectors share (trust, ledger, limiter, lookup cache, error helpers) lives in ``bridge/``."""
