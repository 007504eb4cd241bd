"""Built-in connectors. Nothing imports this package directly: they load through the
``agni_bridge.connectors`` entry points, exactly like third-party connectors."""
