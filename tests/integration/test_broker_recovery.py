"""The broker's recovery machinery and the delivery lease, against a real Redis.

These pin the mechanisms behind the fault tests (tests/faults/test_redis_outage.py): delayed messages
live in Redis until due, orphaned messages come back, leases are renewed by their holder and run out
when it dies, and outcome writes wait for Redis instead of failing.
"""

from __future__ import annotations

import threading
import time

import dramatiq
import pytest
import redis
from redis.exceptions import ResponseError

from bridge.broker import BridgeBroker
from bridge.durable import until_redis
from bridge.embedded_redis import EmbeddedRedis
from bridge.errors import DeferredError
from bridge.keys import ACTOR_NAME, Keys
from bridge.store import CallStore
from tests.conftest import wait_for

QUEUE = "deliver.crm"


@pytest.fixture
def broker(redis_client):
    broker = BridgeBroker(keys=Keys(), client=redis_client, heartbeat_timeout=5000)
    broker.declare_queue(QUEUE)
    yield broker


def message(call_id: str = "c1") -> dramatiq.Message:
    return dramatiq.Message(queue_name=QUEUE, actor_name=ACTOR_NAME, args=(call_id, "crm"), kwargs={}, options={})


def test_a_delayed_message_waits_in_redis_not_in_the_queue_and_moves_once_due(broker, redis_client):
    keys = Keys()
    sent = broker.enqueue(message(), delay=300)
    assert redis_client.llen(keys.queue_list(QUEUE)) == 0
    assert redis_client.zcard(keys.queue_scheduled(QUEUE)) == 1
    assert "eta" not in sent.options and sent.queue_name == QUEUE  # never Dramatiq's in-memory delay queue
    assert broker.move_due() == 0  # not due yet
    wait_for(lambda: broker.move_due() == 1, timeout=5, message="the message to fall due")
    assert redis_client.lrange(keys.queue_list(QUEUE), 0, -1) == [sent.options["redis_message_id"].encode()]
    assert redis_client.zcard(keys.queue_scheduled(QUEUE)) == 0
    assert broker.move_due() == 0  # moved exactly once


def test_due_messages_are_moved_atomically_when_several_workers_race(broker, redis_client):
    keys = Keys()
    for i in range(300):
        broker.enqueue(message(f"c{i}"), delay=0)
    others = [BridgeBroker(keys=keys, client=redis_client) for _ in range(3)]
    for other in others:
        other.declare_queue(QUEUE)
    with_threads = [threading.Thread(target=b.move_due) for b in [broker, *others]]
    for thread in with_threads:
        thread.start()
    for thread in with_threads:
        thread.join()
    ids = redis_client.lrange(keys.queue_list(QUEUE), 0, -1)
    assert len(ids) == len(set(ids)) == 300


def test_a_fetched_message_this_process_no_longer_holds_is_requeued_on_the_second_sweep(broker, redis_client):
    keys = Keys()
    sent = broker.enqueue(message())
    redis_id = sent.options["redis_message_id"]
    # A fetch whose reply was lost: Redis moved the message to this worker's unacked set, no thread has it.
    broker._dispatch("fetch")(QUEUE, 1)
    assert redis_client.llen(keys.queue_list(QUEUE)) == 0
    assert broker.sweep() == 0  # first sighting: it could be a reply still on its way
    assert broker.sweep() == 1
    assert redis_client.lrange(keys.queue_list(QUEUE), 0, -1) == [redis_id.encode()]


def test_a_message_this_process_holds_is_never_swept_until_it_is_acknowledged(broker, redis_client):
    keys = Keys()
    broker.enqueue(message())
    [data] = broker.do_fetch(QUEUE, 1)
    redis_id = dramatiq.Message.decode(data).options["redis_message_id"]
    assert broker.sweep() == 0 and broker.sweep() == 0
    broker.do_ack(QUEUE, redis_id)
    assert broker.sweep() == 0 and broker.sweep() == 0
    assert redis_client.llen(keys.queue_list(QUEUE)) == 0
    assert redis_client.hlen(keys.queue_messages(QUEUE)) == 0


def test_a_new_delay_queue_consumer_means_the_old_in_memory_delay_queue_is_gone(broker, redis_client):
    # Messages an older version left in Dramatiq's delay queue: fetched into memory, then the consumer restarts.
    dq = QUEUE + ".DQ"
    legacy = message().copy(queue_name=dq, options={"redis_message_id": "legacy", "eta": 0})
    broker._dispatch("enqueue")(dq, "legacy", legacy.encode())
    broker.do_fetch(dq, 10)
    assert broker.sweep() == 0 and broker.sweep() == 0  # held: a live delay queue has it
    broker.consume(dq)  # what the consumer thread does after a connection error, having dropped its queue
    broker.sweep()
    assert broker.sweep() == 1
    assert redis_client.lrange(Keys().queue_list(dq), 0, -1) == [b"legacy"]


def test_a_dead_workers_fetched_messages_return_on_the_next_maintenance(broker, redis_client):
    keys = Keys()
    dead = BridgeBroker(keys=keys, client=redis_client, heartbeat_timeout=5000)
    dead.declare_queue(QUEUE)
    dead.enqueue(message())
    dead.do_fetch(QUEUE, 1)
    # Its heartbeat is now 6 s old: it is dead.
    redis_client.zadd(f"{keys.namespace}:__heartbeats__", {dead.broker_id: int(time.time() * 1000) - 6000})
    broker.maintain()
    assert redis_client.llen(keys.queue_list(QUEUE)) == 1


def test_a_lease_is_extended_by_its_holder_and_runs_out_when_nobody_renews_it(redis_client):
    store = CallStore(redis_client, Keys(), retention_seconds=60, lease_seconds=1)
    key = Keys().lock("crm", "c1")
    with store.lock("c1", "crm"):
        for _ in range(3):  # three lease lengths, renewed along the way
            time.sleep(0.4)
            assert store.renew_held() == []
        assert redis_client.pttl(key) > 600
        other = CallStore(redis_client, Keys(), retention_seconds=60, lease_seconds=1)
        with pytest.raises(DeferredError), other.lock("c1", "crm"):
            pass
    assert not redis_client.exists(key)  # released at the end of the block
    with store.lock("c2", "crm"):
        pass
    # A holder that dies renews nothing: its lease is gone within one lease length.
    redis_client.set(Keys().lock("crm", "c3"), "dead-holder", px=1000)
    wait_for(lambda: not redis_client.exists(Keys().lock("crm", "c3")), timeout=3, message="the lease to run out")


def test_a_lease_taken_over_after_it_expired_is_reported_lost_and_not_extended(redis_client):
    store = CallStore(redis_client, Keys(), retention_seconds=60, lease_seconds=1)
    key = Keys().lock("crm", "c1")
    with store.lock("c1", "crm"):
        redis_client.set(key, "someone-else", px=60_000)  # it expired and another worker took it
        assert store.renew_held() == [key]
        assert store.renew_held() == []  # forgotten: this process no longer claims it
    assert redis_client.get(key) == b"someone-else"  # and leaving the block does not free someone else's lease


def test_an_outcome_write_waits_for_redis_to_come_back(tmp_path):
    server = EmbeddedRedis(tmp_path / "r", appendonly=True)
    server.start()
    client = redis.Redis.from_url(server.url, socket_timeout=2, socket_connect_timeout=0.5)
    store = CallStore(client, Keys(), retention_seconds=60)
    try:
        server.kill()
        finished = threading.Event()
        worker = threading.Thread(
            target=lambda: (store.mark_done("c1", "crm", "delivered", {"type": "attempt"}), finished.set())
        )
        worker.start()
        time.sleep(1.0)  # the outage
        assert not finished.is_set(), "the write must wait, not fail or pretend"
        server.start()
        wait_for(finished.is_set, timeout=15, message="the write once Redis is back")
        assert store.done("c1", "crm") == "delivered"
    finally:
        client.close()
        server.stop()


def test_an_error_redis_answers_with_is_not_an_outage_and_is_raised_at_once(redis_client):
    redis_client.set("a-string", "x")
    started = time.monotonic()
    with pytest.raises(ResponseError):
        until_redis(lambda: redis_client.hget("a-string", "field"), "reading")
    assert time.monotonic() - started < 1
