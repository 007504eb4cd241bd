"""The `hubspot` connector: each call becomes one Call engagement on the right Contact, plus a follow-up Task.

The entry point names :class:`HubSpotConnector` here; its modules, in the order a delivery uses them:

    connector   the Connector subclass: find the contact, write the call and task exactly once
    config      the settings Struct and their offline checks
    match       finding the contact (one search, the lookup cache); lookup: concurrent misses, one search
    records     mapped records as HubSpot properties and associations (pure)
    batch       concurrent creates and updates as /batch requests
    client      the one door to HubSpot: budgets, retries; errors: its answers as bridge errors
    wiring      what the connector builds once (client, ledgers, finder, batchers)
    properties  `agni-bridge setup`: the call-id property
"""

from connectors.hubspot.connector import HubSpotConnector

__all__ = ["HubSpotConnector"]
