"""The `zendesk` connector: each call becomes a Zendesk Support ticket with a voice comment, plus a follow-up task.

The entry point names :class:`ZendeskConnector` here; its modules, in the order a delivery uses them:

    connector  the Connector subclass: find the requester, write the ticket and the follow-up task
    config     the settings Struct and their offline checks
    match      finding the end-user (users search by email and phone spellings, the lookup cache)
    people     creating an end-user for an unknown caller (Zendesk's users upsert)
    tickets    mapped records as ticket bodies: voice comment, custom fields, tags (pure)
    writer     each ticket exactly once: ledger + Idempotency-Key + the external_id listing
    client     the one door to Zendesk: budgets, the 429 pause, retries; errors: its answers as bridge errors
    wiring     what the connector builds once (client, budgets, ledger, finder)
    account    `agni-bridge setup`: the token's user is an agent, the configured ids exist
    preview    `agni-bridge preview`: the requests a delivery would send
"""

from connectors.zendesk.connector import ZendeskConnector

__all__ = ["ZendeskConnector"]
