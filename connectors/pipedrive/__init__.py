"""The `pipedrive` connector: each call becomes a call log (or a done call activity) on the matched person,
plus a follow-up activity when work is left.

The entry point names :class:`PipedriveConnector` here; its modules, in the order a delivery uses them:

    connector   the Connector subclass: find the person, write the call and follow-up exactly once
    config      the settings Struct and their offline checks
    match       finding the person (searches, verification, the lookup cache); owners: the agent's user
    records     mapped records as Pipedrive bodies, units and the reconciliation marker (pure)
    reconcile   after a lost answer: find the record an earlier attempt wrote, by its marker
    api         the endpoints used, one method each; client: the one door to Pipedrive (budgets, retries)
    auth        API token or OAuth bearer (renewed with its refresh token); errors: answers as bridge errors
    recording   `recording: attach`: the audio file on the call log
    wiring      what the connector builds once (client, ledgers, finder, owners)
    setup       `agni-bridge setup`: the token's user, its permissions, owners and activity types
    preview     `agni-bridge preview`: every request a delivery would send
"""

from connectors.pipedrive.connector import PipedriveConnector

__all__ = ["PipedriveConnector"]
