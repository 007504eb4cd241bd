"""The console's access rules and the admin JSON API, over HTTP against the real app, Redis and a real worker.

Sessions, CSRF, roles, the sign-in rate, cookie attributes (behind a trusted proxy too), the path prefix,
security headers; bulk replay and purge of failure groups; the mapping preview and save; the audit log.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bridge.settings import load_settings
from tests.conftest import ORG_ID, ROOT, Sink, payload_bytes, running_api, running_worker, wait_for
from tests.console.conftest import serving
from tests.fakes.httpserver import Fault

ADMIN = "admin-token-for-the-api-tests"
VIEWER = "viewer-token-for-the-api-tests"
ENV = {"ADMIN_T": ADMIN, "VIEWER_T": VIEWER}

CONFIG = """
agni: {{org_ids: ["{org}"]}}
data_dir: {home}/var
mappings_dir: {home}/mappings
server: {{root_path: "{root}"}}
delivery: {{min_backoff_seconds: 0.05, max_backoff_seconds: 0.2, max_retries: 2, http_attempts: 1, timeout_seconds: 5}}
worker: {{threads: 4, shutdown_timeout_seconds: 5, heartbeat_timeout_seconds: 5}}
admin:
  users:
    - {{name: ada, token: "${{ADMIN_T}}", role: admin}}
    - {{name: vic, token: "${{VIEWER_T}}", role: viewer}}
  mappings_writable: {writable}
  trusted_proxies: [{proxies}]
  login_attempts_per_minute: 3
connectors:
  outbox: {{type: jsonl, path: "{home}/out.jsonl", mapping: jsonl_record.yaml}}
  forward: {{type: webhook_forward, url: "{sink}/hook"}}
"""


def write_config(home: Path, sink: str, *, root: str = "", writable: bool = False, proxies: str = "") -> Path:
    (home / "mappings").mkdir(parents=True, exist_ok=True)
    path = home / "config.yaml"
    path.write_text(
        CONFIG.format(
            org=ORG_ID,
            home=home,
            root=root,
            writable=str(writable).lower(),
            proxies=proxies,
            sink=sink,
        )
    )
    return path


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def send(base: str, call_id: str) -> None:
    response = httpx.post(
        f"{base}/webhooks/agni", content=payload_bytes(call_session_id=call_id),
        headers={"content-type": "application/json"},
    )  # fmt: skip
    assert response.json()["status"] == "accepted"


def state(base: str, call_id: str, connector: str) -> str:
    response = httpx.get(f"{base}/admin/calls/{call_id}", headers=bearer(ADMIN))
    if response.status_code != 200:
        return ""
    found = [c for c in response.json()["connectors"] if c["connector"] == connector]
    return found[0]["status"] if found else ""


def sign_in(client: httpx.Client, prefix: str = "", token: str = ADMIN, **headers: str) -> httpx.Response:
    form = client.get(f"{prefix}/console/login", headers=headers)
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    # Sent by hand: over plain http a client drops a cookie marked Secure (set when a proxy says https).
    nonce = re.search(r"agni_console_signin=([^;]*)", form.headers.get("set-cookie", "")).group(1)
    return client.post(
        f"{prefix}/console/login",
        data={"csrf": csrf, "token": token, "next": f"{prefix}/console/"},
        headers={**headers, "cookie": f"agni_console_signin={nonce}"},
    )


def page_csrf(client: httpx.Client, path: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', client.get(path).text).group(1)


@pytest.fixture
def app(tmp_path, redis_url, sink):
    """The API (in a thread) with a worker, from a real config file; yields (base URL, settings)."""

    from bridge.db.engine import log_engine
    from bridge.db.migrate import ensure_schema

    def start(**options):
        config = write_config(tmp_path, sink.url, **options)
        settings = load_settings(config, env=ENV)
        engine = log_engine(settings)
        ensure_schema(engine)  # as a worker does on start; the API alone never migrates
        engine.dispose()
        return config, settings

    yield start


def test_the_console_and_the_admin_api_are_off_without_users(tmp_path, redis_url):
    from tests.conftest import make_settings

    settings = make_settings(tmp_path)
    with running_api(settings, redis_url) as base:
        page = httpx.get(f"{base}/console/")
        assert page.status_code == 404
        assert "The console is off" in page.text
        assert httpx.get(f"{base}/admin/calls", headers=bearer("x" * 20)).status_code == 404


def test_sign_in_sets_a_strict_http_only_cookie_and_sign_out_ends_the_session(app, redis_url):
    _, settings = app()
    with running_api(settings, redis_url) as base, httpx.Client(base_url=base) as client:
        assert client.get("/console/calls").status_code == 303  # to the sign-in page
        signed = sign_in(client)
        assert signed.status_code == 303
        cookie = next(h for h in signed.headers.get_list("set-cookie") if h.startswith("agni_console="))
        assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Path=/;" in cookie
        assert "Secure" not in cookie  # plain http, no trusted proxy
        assert client.get("/console/calls").status_code == 200
        stolen = client.cookies.get("agni_console")

        csrf = page_csrf(client, "/console/calls")
        assert client.post("/console/logout", data={"csrf": csrf}).status_code == 303
        replayed = httpx.get(f"{base}/console/calls", cookies={"agni_console": stolen})
        assert replayed.status_code == 303, "a signed-out session's cookie must not work again"
        tampered = stolen[:-3] + ("AAA" if not stolen.endswith("AAA") else "BBB")
        assert httpx.get(f"{base}/console/calls", cookies={"agni_console": tampered}).status_code == 303


def test_the_cookie_is_secure_behind_a_trusted_https_proxy_only(app, redis_url):
    _, trusted = app(proxies='"127.0.0.1/32"')
    with running_api(trusted, redis_url) as base, httpx.Client(base_url=base) as client:
        signed = sign_in(client, **{"x-forwarded-proto": "https"})
        cookie = next(h for h in signed.headers.get_list("set-cookie") if h.startswith("agni_console="))
        assert "Secure" in cookie
    _, untrusted = app(proxies="")
    # uvicorn's own proxy_headers (on by default for 127.0.0.1) would believe the header before we are asked.
    with serving(untrusted, redis_url, proxy_headers=False) as base, httpx.Client(base_url=base) as client:
        signed = sign_in(client, **{"x-forwarded-proto": "https"})
        cookie = next(h for h in signed.headers.get_list("set-cookie") if h.startswith("agni_console="))
        assert "Secure" not in cookie


def test_failed_sign_ins_are_rate_limited_per_address(app, redis_url):
    _, settings = app()
    with running_api(settings, redis_url) as base, httpx.Client(base_url=base) as client:
        for _ in range(3):
            minute = int(time.time() // 60)
            answers = [sign_in(client, token="wrong-token-wrong-token").status_code for _ in range(3)]
            answers.append(sign_in(client).status_code)  # even the right token now waits
            if int(time.time() // 60) == minute:
                break
        assert answers == [401, 401, 401, 429]
        assert client.get("/console/calls").status_code == 303  # not signed in


def test_pages_carry_a_strict_policy_and_load_only_the_bridges_own_assets(app, redis_url):
    _, settings = app()
    with running_api(settings, redis_url) as base, httpx.Client(base_url=base) as client:
        sign_in(client)
        page = client.get("/console/")
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "style-src 'self'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["cache-control"] == "no-store"
        assert not re.search(r'(src|href)="(https?:)?//', page.text), "no third-party asset"
        assert " style=" not in page.text and "<script>" not in page.text  # nothing inline
        assert '"includeIndicatorStyles": false' in page.text
        htmx = client.get(re.search(r'src="([^"]+htmx\.min\.js[^"]*)"', page.text).group(1))
        assert htmx.status_code == 200 and htmx.headers["content-type"].startswith("text/javascript")
        assert b"htmx" in htmx.content[:200]


def test_every_post_needs_an_admin_and_a_session_needs_its_csrf_token(app, redis_url, sink):
    _, settings = app()
    with running_worker(settings, redis_url), running_api(settings, redis_url) as base:
        send(base, "p-1")
        wait_for(lambda: state(base, "p-1", "outbox") == "delivered", timeout=20, message="p-1 delivered")
        posts = [
            ("/admin/calls/p-1/replay", {}),
            ("/admin/failures/replay", {"connector": "forward", "group": None}),
            ("/admin/failures/purge", {"connector": "forward", "group": None}),
            ("/admin/mappings/preview", {"connector": "outbox", "call_id": "p-1"}),
            ("/admin/mappings/outbox", {"mapping": "fields: {a: b}"}),
            ("/admin/connectors/outbox/setup", {}),
        ]
        for path, body in posts:
            answer = httpx.post(f"{base}{path}", json=body, headers=bearer(VIEWER))
            assert answer.status_code == 403, path
        assert httpx.get(f"{base}/admin/failures", headers=bearer(VIEWER)).status_code == 200  # viewers read

        with httpx.Client(base_url=base) as client:  # the console's session on the JSON API
            sign_in(client)
            assert client.post("/admin/calls/p-1/replay", json={}).status_code == 403
            token = page_csrf(client, "/console/")
            replayed = client.post("/admin/calls/p-1/replay", json={}, headers={"x-csrf-token": token})
            assert replayed.status_code == 200 and replayed.json()["replayed"] == ["outbox", "forward"]
            cross = client.post(
                "/admin/calls/p-1/replay", json={}, headers={"x-csrf-token": token, "sec-fetch-site": "cross-site"}
            )
            assert cross.status_code == 403


def test_bulk_replay_skips_delivered_calls_and_purge_drops_dead_letters(app, redis_url, sink: Sink):
    config, settings = app()
    ids = [f"bulk-{i}" for i in range(5)]
    sink.faults.add(Fault(status=400, body=b"token expired for account 12345"), times=len(ids))
    with running_worker(settings, redis_url), running_api(settings, redis_url) as base:
        for call_id in ids:
            send(base, call_id)
        for call_id in ids:
            wait_for(lambda c=call_id: state(base, c, "forward") == "dead", timeout=20, message=f"{call_id} dead")
        with httpx.Client(base_url=base) as client:  # a dead call's page: its failed attempts in the timeline
            sign_in(client)
            detail = client.get(f"/console/calls/{ids[0]}")
            assert detail.status_code == 200 and "token expired for account 12345" in detail.text
            assert "dead (#1)" in detail.text
        groups = httpx.get(f"{base}/admin/failures", headers=bearer(ADMIN)).json()["groups"]
        assert len(groups) == 1 and groups[0]["count"] == 5 and groups[0]["dead"] == 5
        group = groups[0]["error_group"]
        listed = httpx.get(f"{base}/admin/failures/calls", params={"connector": "forward", "group": group},
                           headers=bearer(ADMIN)).json()["calls"]  # fmt: skip
        assert sorted(c["call_session_id"] for c in listed) == ids

        first = httpx.post(f"{base}/admin/failures/replay", json={"connector": "forward", "ids": ids[:2]},
                           headers=bearer(ADMIN))  # fmt: skip
        assert first.status_code == 200
        done = first.json()
        assert (done["requeued"], done["already_delivered"], done["state"]) == (2, 0, "finished")
        for call_id in ids[:2]:
            wait_for(lambda c=call_id: state(base, c, "forward") == "delivered", timeout=20, message="replayed")
        again = httpx.post(f"{base}/admin/failures/replay", json={"connector": "forward", "ids": ids[:2]},
                           headers=bearer(ADMIN)).json()  # fmt: skip
        assert (again["requeued"], again["already_delivered"]) == (0, 2)
        assert len([r for r in sink.received if r.json()["data"]["call_session_id"] in ids[:2]]) == 2  # once each

        purged = httpx.post(f"{base}/admin/failures/purge", json={"connector": "forward", "group": group},
                            headers=bearer(ADMIN)).json()  # fmt: skip
        assert purged["purged"] == 3
        wait_for(lambda: httpx.get(f"{base}/admin/failures", headers=bearer(ADMIN)).json()["groups"] == [],
                 timeout=20, message="the group to empty")  # fmt: skip
        job = httpx.get(f"{base}/admin/jobs/{purged['id']}", headers=bearer(ADMIN)).json()
        assert job["state"] == "finished" and job["actor"] == "ada"

        audit = httpx.get(f"{base}/admin/audit", headers=bearer(ADMIN)).json()["entries"]
        assert [(e["action"], e["calls"]) for e in audit[:3]] == [("purge", 3), ("replay", 0), ("replay", 2)]
    printed = subprocess.run(
        [sys.executable, "-m", "bridge", "audit", "--config", str(config)],
        capture_output=True, text=True, env={**ENV, "PATH": "/usr/bin:/bin"}, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    assert "ada  purge  forward: " in printed.stdout and "calls=3" in printed.stdout


def test_the_mapping_preview_shows_errors_at_their_field_and_saving_keeps_the_old_version(app, redis_url):
    _, readonly = app(writable=False)
    broken = 'fields:\n  call_id: "{{ call.call_session_id }}"\n  Subject: "{{ call.caller_name | nope }}"\n'
    with running_api(readonly, redis_url) as base:
        preview = httpx.post(f"{base}/admin/mappings/preview", headers=bearer(ADMIN), json={
            "connector": "outbox", "mapping": broken, "payload": {"event": "call.completed", "data": {}},
        }).json()  # fmt: skip
        assert preview["compile_error"]["field"] == "fields.Subject"
        assert "No filter named 'nope'" in preview["compile_error"]["message"]
        typed = 'fields:\n  n: {value: "{{ call.caller_name }}", type: int}\n  ok: "{{ call.caller_name }}"\n'
        rendered = httpx.post(f"{base}/admin/mappings/preview", headers=bearer(ADMIN), json={
            "connector": "outbox", "mapping": typed, "payload": {"data": {"caller_name": "Ada"}},
        }).json()  # fmt: skip
        fields = {f["field"]: f for f in rendered["sections"]["fields"]["fields"]}
        assert "cannot convert 'Ada' to int" in fields["fields.n"]["error"]
        assert fields["fields.ok"]["value"] == "Ada"
        refused = httpx.post(f"{base}/admin/mappings/outbox", headers=bearer(ADMIN), json={"mapping": typed})
        assert refused.status_code == 403
    config, writable = app(writable=True)
    target = config.parent / "mappings" / "jsonl_record.yaml"
    good = 'fields:\n  call_id: "{{ call.call_session_id }}"\n'
    with running_api(writable, redis_url) as base:
        bad = httpx.post(f"{base}/admin/mappings/outbox", headers=bearer(ADMIN), json={"mapping": broken})
        assert bad.status_code == 422 and "fields.Subject" in bad.json()["error"] and not target.exists()
        saved = httpx.post(f"{base}/admin/mappings/outbox", headers=bearer(ADMIN), json={"mapping": good}).json()
        assert target.read_text() == good and saved["kept"] == ""  # over the built-in: nothing to keep
        newer = good + "  org: '{{ org_id }}'\n"
        again = httpx.post(f"{base}/admin/mappings/outbox", headers=bearer(ADMIN), json={"mapping": newer}).json()
        assert target.read_text() == newer and Path(again["kept"]).read_text() == good
        listed = httpx.get(f"{base}/admin/mappings", headers=bearer(ADMIN)).json()["mappings"]
        assert {"connector": "outbox", "mapping": "jsonl_record.yaml", "location": str(target),
                "digest": again["digest"]} in listed  # fmt: skip


def test_the_console_works_under_a_path_prefix_with_or_without_the_proxy_stripping_it(app, redis_url):
    _, settings = app(root="/agni")
    with running_api(settings, redis_url) as base:
        for path in ("/agni/console/login", "/console/login"):
            page = httpx.get(f"{base}{path}")
            assert page.status_code == 200, path
            assert 'action="/agni/console/login"' in page.text
            assert 'href="/agni/console/static/console.css' in page.text
        with httpx.Client(base_url=base) as client:
            signed = sign_in(client, prefix="/agni")
            assert signed.headers["location"] == "/agni/console/"
            cookie = next(h for h in signed.headers.get_list("set-cookie") if h.startswith("agni_console="))
            assert "Path=/agni/;" in cookie
            assert client.get("/agni/console/").status_code == 200
            assert client.get("/agni/console/calls").status_code == 200


def test_quota_figures_from_crm_headers_reach_the_overview(redis_client):
    from bridge.quota import QuotaRecorder, hubspot_quota, read_quotas

    headers = {
        "x-hubspot-ratelimit-daily": "250000",
        "x-hubspot-ratelimit-daily-remaining": "249990",
        "x-hubspot-ratelimit-max": "190",
        "x-hubspot-ratelimit-remaining": "180",
        "content-type": "x",
    }
    assert hubspot_quota(headers) == {
        "daily_limit": 250000, "daily_remaining": 249990, "window_limit": 190, "window_remaining": 180,
    }  # fmt: skip
    QuotaRecorder(redis_client, "agni", "hs").hubspot(headers)
    QuotaRecorder(redis_client, "agni", "sf").salesforce(1200, 15000)
    found = read_quotas(redis_client, "agni", ["hs", "sf", "none"])
    assert found["hs"]["window_remaining"] == 180
    assert (found["sf"]["api_usage"], found["sf"]["api_limit"]) == (1200, 15000)
    assert "none" not in found
