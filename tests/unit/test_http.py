"""Error helpers every connector shares (bridge.http): the status table, Retry-After, body excerpts without secrets."""

import pytest

from bridge.errors import PermanentError, RetryableError
from bridge.http import error_for_status, excerpt, parse_retry_after


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retryable_and_keep_retry_after(status):
    error = error_for_status("Zendesk create ticket", status, body="busy", headers={"retry-after": "7"})
    assert isinstance(error, RetryableError)
    assert (error.status, error.retry_after) == (status, 7.0)
    assert error.message == f"Zendesk create ticket answered {status}: busy"


@pytest.mark.parametrize("status", [301, 400, 401, 403, 404, 409, 410, 422, 501])
def test_other_statuses_are_permanent(status):
    error = error_for_status("receiver", status, hint=" (check it)")
    assert type(error) is PermanentError
    assert error.message == f"receiver answered {status} (check it)"


def test_an_excerpt_is_one_short_line_without_the_secrets_it_was_told_about():
    page = "<html>\n  <body>Bad token   sk_live_123 for acct</body>\n</html>" + "x" * 500
    shown = excerpt(page, secrets=["sk_live_123", ""])
    assert shown.startswith("<html> <body>Bad token <redacted> for acct</body> </html>")
    assert len(shown) == 300 and "sk_live_123" not in shown
    assert excerpt(b"\xff binary") == "\ufffd binary"
    assert excerpt(None) == ""


def test_retry_after_reads_seconds_and_dates():
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
