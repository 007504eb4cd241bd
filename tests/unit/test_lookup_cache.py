"""The shared lookup cache (bridge.lookup_cache): answers and "nobody" remembered in the test's real Redis."""

from __future__ import annotations

import logging

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from bridge.errors import RetryableError
from bridge.lookup_cache import MISSING, LookupCache


@pytest.fixture
def cache(redis_client) -> LookupCache:
    return LookupCache(redis_client, "agni:crm:test:lookup", 300, destination="Zendesk")


def test_an_answer_and_a_nobody_are_both_remembered_and_told_apart_from_nothing_cached(cache):
    cache.put("email", "ann@example.com", {"id": "42"})
    cache.put("phone", "+14155550100", None)  # nobody has this number
    assert cache.get("email", "ann@example.com") == {"id": "42"}
    assert cache.get("phone", "+14155550100") is None
    assert cache.get("phone", "+14155550199") is MISSING and not MISSING


def test_identifiers_are_hashed_so_no_email_or_number_appears_in_a_key_name(cache, redis_client):
    cache.put_many({("email", "ann@example.com"): {"id": "42"}, ("phone", "+14155550100"): None})
    keys = sorted(key.decode() for key in redis_client.scan_iter("agni:crm:test:lookup:*"))
    assert [key.rsplit(":", 1)[0] for key in keys] == ["agni:crm:test:lookup:email", "agni:crm:test:lookup:phone"]
    assert not any("ann" in key or "4155550100" in key for key in keys)
    assert redis_client.ttl(keys[0]) in range(298, 301)


def test_many_entries_are_read_in_one_round_trip_leaving_out_those_not_cached(cache):
    cache.put_many({("email", "a@x.io"): {"id": "1"}, ("email", "b@x.io"): None})
    found = cache.get_many([("email", "a@x.io"), ("email", "b@x.io"), ("email", "c@x.io")])
    assert found == {("email", "a@x.io"): {"id": "1"}, ("email", "b@x.io"): None}


def test_keep_existing_lets_a_late_nobody_not_hide_a_person_written_meanwhile(cache):
    cache.put("phone", "+14155550100", {"id": "created"})
    cache.put("phone", "+14155550100", None, keep_existing=True)
    assert cache.get("phone", "+14155550100") == {"id": "created"}
    cache.put("phone", "+14155550100", None)  # a fresh lookup replaces a stale answer
    assert cache.get("phone", "+14155550100") is None


def test_a_ttl_of_zero_turns_the_cache_off_except_for_writes_with_their_own_ttl(redis_client):
    off = LookupCache(redis_client, "agni:crm:test:off", 0)
    off.put("email", "a@x.io", {"id": "1"})
    assert not list(redis_client.scan_iter("agni:crm:test:off:*"))
    off.put("email", "a@x.io", {"id": "1"}, ttl=60)
    assert len(list(redis_client.scan_iter("agni:crm:test:off:*"))) == 1
    assert off.get("email", "a@x.io") is MISSING


def test_without_redis_the_cache_misses_or_fails_as_the_connector_chose(caplog):
    gone = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    caplog.set_level(logging.WARNING)
    open_cache = LookupCache(gone, "agni:x", 60, destination="Salesforce")
    assert open_cache.get("email", "a@x.io") is MISSING
    open_cache.put("email", "a@x.io", None)  # best effort: logged, not raised
    assert "asking Salesforce" in caplog.text and "not cached" in caplog.text

    strict = LookupCache(gone, "agni:x", 60, destination="HubSpot", fail_open=False)
    with pytest.raises(RetryableError, match=r"^HubSpot lookup cache unavailable \(Redis: ConnectionError\)"):
        strict.get("email", "a@x.io")
    assert LookupCache(None, "agni:x", 60).get("email", "a@x.io") is MISSING  # no Redis configured at all
