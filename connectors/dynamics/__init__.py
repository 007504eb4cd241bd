"""The `dynamics` connector: each call lands in Microsoft Dynamics 365 (Dataverse) as a completed phone call, once.

The entry point names :class:`DynamicsConnector` here; its modules, in the order a delivery uses them:

    connector    the Connector subclass: match, plan, write exactly once
    config       the settings Struct and their offline checks
    match        finding (and creating) the contact or lead; lookup: the OData queries, batched
    records      a call as request bodies: phone call, parties, note, follow-up task, close (pure)
    writer       create-only writes under deterministic ids, then the close; one change set per call
    batch        the $batch multipart/mixed format (pure); odata: literals, queries and record ids (pure)
    client       the one door to the Web API: headers, token, budgets, retries; errors: its answers as bridge errors
    auth         Entra ID client credentials (secret or certificate) and the token cache; certificate: the assertion
    limits       the application user's shared budgets (5-minute window, concurrency, pause, daily cap)
    setup        `agni-bridge setup`: WhoAmI, privileges, reads, owners; preview: `agni-bridge preview`
"""

from connectors.dynamics.connector import DynamicsConnector

__all__ = ["DynamicsConnector"]
