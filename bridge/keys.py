"""Every Redis key and queue name the bridge uses, in one place.

All keys start with the configured prefix (default ``agni``) so one Redis can
serve several bridges, and so an operator can find everything with one SCAN.

    {p}:dedupe:{call}        claim: this call was accepted (TTL = dedupe window)
    {p}:call:{call}          the webhook body, until every connector has finished with it and the
                             log has it (then deleted by the log writer; TTL = retention as a backstop)
    {p}:done:{call}          hash connector -> outcome: delivered, never write again; `_ingest` holds
                             the stream id of the latest (re)ingest while the call is in progress
    {p}:lock:{conn}:{call}   a short lease, held while one worker delivers (stops redeliveries racing)
    {p}:events               the stream of log events the workers drain into the database (bridge.db)
    {p}:log-writer           the lease of the one worker draining it
    {p}:circuit:{conn}       a connector's circuit breaker (consecutive failures, open-until)
    {p}:dramatiq:*           Dramatiq's queues (one queue per connector: deliver.{conn}), plus
                             {p}:dramatiq:deliver.{conn}.scheduled, the retries and deferrals
                             waiting for their time (see bridge.broker)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ACTOR_NAME", "Keys"]

ACTOR_NAME = "deliver_call"


@dataclass(frozen=True)
class Keys:
    prefix: str = "agni"

    def dedupe(self, call_id: str) -> str:
        return f"{self.prefix}:dedupe:{call_id}"

    def payload(self, call_id: str) -> str:
        return f"{self.prefix}:call:{call_id}"

    def done(self, call_id: str) -> str:
        return f"{self.prefix}:done:{call_id}"

    def lock(self, connector: str, call_id: str) -> str:
        return f"{self.prefix}:lock:{connector}:{call_id}"

    @property
    def events(self) -> str:
        return f"{self.prefix}:events"

    @property
    def log_writer(self) -> str:
        return f"{self.prefix}:log-writer"

    def circuit(self, connector: str) -> str:
        return f"{self.prefix}:circuit:{connector}"

    # Where versions before the database kept the log; read once by `agni-bridge db import-redis`.
    def legacy_log(self, call_id: str) -> str:
        return f"{self.prefix}:log:{call_id}"

    @property
    def legacy_index(self) -> str:
        return f"{self.prefix}:calls"

    def legacy_dlq(self, connector: str) -> str:
        return f"{self.prefix}:dlq:{connector}"

    def metrics(self, name: str) -> str:
        return f"{self.prefix}:metrics:{name}"

    @property
    def namespace(self) -> str:
        """Dramatiq's namespace on this Redis."""
        return f"{self.prefix}:dramatiq"

    @staticmethod
    def queue(connector: str) -> str:
        """The Dramatiq queue of one connector: each connector retries and backs off on its own."""
        return f"deliver.{connector}"

    def queue_list(self, queue: str) -> str:
        """Dramatiq's Redis list of message ids for a queue (its layout: `{namespace}:{queue}`)."""
        return f"{self.namespace}:{queue}"

    def queue_messages(self, queue: str) -> str:
        """Dramatiq's hash of message id -> encoded message for a queue."""
        return f"{self.namespace}:{queue}.msgs"

    def queue_scheduled(self, queue: str) -> str:
        """Sorted set of message ids by due time (ms): the queue's delayed messages (bridge.broker)."""
        return f"{self.namespace}:{queue}.scheduled"
