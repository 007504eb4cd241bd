"""The `salesforce` connector: each call lands as a completed call Task on the right Contact or Lead, once.

The entry point names :class:`SalesforceConnector` here; its modules, in the order a delivery uses them:

    connector   the Connector subclass: match, upsert the Task and follow-up, attach the recording
    config      the settings Struct and their offline checks
    match       finding the caller (cache in Redis, the Lead-creation lock); lookup: the queries, batched
    task        one Task upserted by external id; batch: many at once through sObject Collections
    schema      field lengths and create-only fields from describe
    recording   `recording: attach` (download through bridge.fetch, upload as a ContentVersion)
    api         the one door to Salesforce: re-auth once, retries; auth: the OAuth flows and token cache
    http        the requests session (trusted CAs, timeouts, the daily API budget); errors: translation
"""

from connectors.salesforce.connector import SalesforceConnector

__all__ = ["SalesforceConnector"]
