"""The console in a real browser (headless Chromium) against a real `agni-bridge run` and fake CRMs.

The steps read like a person's: sign in with the token, search by phone number, open the call, follow the
link to the Salesforce Task; find a failing connector's calls as one group and replay it once the CRM is
back; try a mapping change in the playground and save it. Elements are found by role and visible text.
"""

from __future__ import annotations

import re
from collections import Counter

from tests.conftest import wait_for
from tests.console.conftest import (
    ADMIN_TOKEN,
    HS_TOKEN,
    VIEWER_TOKEN,
    ConsoleBridge,
    csrf_of,
    outside_origin,
    shot,
    sign_in,
)

SEED = "019d2b3c-8e9f-7a0b-1c2d-4e5f6a7b8c9d"  # examples/call_completed.json


def test_sign_in_find_the_seed_call_by_phone_and_open_its_salesforce_task(bridge: ConsoleBridge, context_factory):
    bridge.send(SEED)
    delivered = bridge.wait_status(SEED, "salesforce", "delivered")
    bridge.wait_status(SEED, "hubspot", "delivered")
    task = next(t for t in bridge.salesforce.tasks if t["Agni_Call_Session_Id__c"] == SEED)
    assert delivered["records"]["Task"] == task["Id"]

    context = context_factory()
    page = context.new_page()
    sign_in(page, bridge.url, ADMIN_TOKEN)
    page.get_by_role("link", name="Calls").click()
    page.get_by_label("Phone").fill("(415) 555-0100")  # any spelling of the number finds the call
    page.get_by_role("button", name="Search").click()
    row = page.get_by_role("row").filter(has_text="John Doe")
    row.get_by_role("link").first.click()
    page.wait_for_url(f"**/console/calls/{SEED}")

    link = page.get_by_role("link", name="Open Task in salesforce")
    href = link.get_attribute("href")
    assert href == f"{bridge.salesforce.url}/lightning/r/Task/{task['Id']}/view"
    assert page.get_by_text(task["Id"]).first.is_visible()
    assert page.get_by_text("Customer called about their order #4521").first.is_visible()
    timeline = page.get_by_role("table", name="Attempts for salesforce")
    assert timeline.get_by_role("cell", name="delivered (#1)").is_visible()
    assert page.get_by_role("button", name="Replay").is_visible()
    assert outside_origin(context, bridge.url) == [], "every request must go to the bridge itself"
    shot(page, "call_detail")


def test_a_transcript_with_markup_is_shown_as_text_and_no_script_runs(bridge: ConsoleBridge, context_factory):
    call_id = "xss-0001"
    bridge.send(
        call_id,
        caller_name="<b>Mallory</b>",
        summary="<script>window.__xss = 'summary'</script>",
        recording_url="javascript:window.__xss='recording'",
        transcripts=[
            {"role": "user", "timestamp_ms": 0, "message": {"content": "<img src=x onerror=\"window.__xss='img'\">"}},
            {"role": "agent", "timestamp_ms": 1500, "message": {"content": "<script>window.__xss='turn'</script>"}},
        ],
    )
    bridge.wait_status(call_id, "salesforce", "delivered")
    bridge.wait_status(call_id, "hubspot", "delivered")  # before the next test takes HubSpot's token away
    context = context_factory()
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_in(page, bridge.url, ADMIN_TOKEN)
    page.goto(f"/console/calls/{call_id}")
    assert page.get_by_text("<script>window.__xss = 'summary'</script>").first.is_visible()
    assert page.get_by_text("<img src=x onerror=\"window.__xss='img'\">").first.is_visible()
    assert page.get_by_text("<script>window.__xss='turn'</script>").first.is_visible()
    assert page.get_by_text("<b>Mallory</b>").first.is_visible()
    assert page.get_by_role("link", name="Recording").count() == 0  # a javascript: URL is never a link
    page.get_by_text("Webhook JSON").click()  # the raw payload, expanded
    assert page.locator("pre.json").get_by_text("onerror", exact=False).is_visible()
    assert page.evaluate("window.__xss") is None
    assert page.locator("main img, main script, main b").count() == 0
    assert dialogs == []
    shot(page, "xss_as_text")


def test_a_failing_connector_is_one_group_and_replay_delivers_each_once(bridge: ConsoleBridge, context_factory):
    hubspot = bridge.hubspot
    ids = [f"expired-{i:03d}" for i in range(12)]
    hubspot.token = "rotated-by-someone"  # every HubSpot request is now 401: each call a dead letter
    try:
        for call_id in ids:
            bridge.send(call_id, phone=f"+1415555{1000 + int(call_id[-3:]):04d}")
        for call_id in ids:
            bridge.wait_status(call_id, "hubspot", "dead")
            bridge.wait_status(call_id, "salesforce", "delivered")
    finally:
        hubspot.token = HS_TOKEN  # the CRM recovers
    before = Counter(c["properties"].get("agni_call_session_id") for c in hubspot.objects["calls"].values())
    assert not any(call_id in before for call_id in ids)

    context = context_factory()
    page = context.new_page()
    sign_in(page, bridge.url, ADMIN_TOKEN)
    page.get_by_role("link", name="Failures").click()
    groups = page.get_by_role("row").filter(has_text="hubspot")
    assert groups.count() == 1, "one expired token is one group"
    assert groups.get_by_role("cell", name=re.compile(r"^12 \(12 dead")).is_visible()
    groups.get_by_role("link").first.click()
    page.get_by_role("button", name="Replay", exact=True).click()
    page.get_by_role("heading", name="Replay 12 call(s)?").wait_for()
    page.get_by_role("button", name="Replay", exact=True).click()
    page.get_by_text("Finished:").wait_for(timeout=30_000)
    assert page.get_by_role("status").filter(has_text="12 re-queued, 0 already delivered").is_visible()

    for call_id in ids:
        bridge.wait_status(call_id, "hubspot", "delivered")
    after = Counter(c["properties"].get("agni_call_session_id") for c in hubspot.objects["calls"].values())
    assert [after[call_id] for call_id in ids] == [1] * len(ids)
    audit = bridge.api("/admin/audit").json()["entries"]
    assert any(e["actor"] == "alice" and e["action"] == "replay" and e["calls"] == 12 for e in audit)
    shot(page, "failures_replayed")


def test_the_playground_renders_live_and_shows_a_broken_field(bridge: ConsoleBridge, context_factory):
    context = context_factory()
    page = context.new_page()
    sign_in(page, bridge.url, ADMIN_TOKEN)
    page.get_by_role("link", name="Mappings").click()
    page.get_by_role("link", name="Open in the playground").first.click()
    page.wait_for_url("**/console/mappings/salesforce*")
    editor = page.get_by_label("Mapping (YAML)")
    original = editor.input_value()
    assert "Subject:" in original

    edited = re.sub(r"(?m)^  Subject:.*$", '  Subject: "Live {{ call.caller_name }} test"', original, count=1)
    editor.fill(edited)
    wait_for(lambda: page.get_by_text("Live John Doe test").count() > 0, timeout=15, message="the live render")
    assert page.get_by_text(re.compile(r"this change alters \d+ of the last \d+")).is_visible()

    broken = re.sub(r"(?m)^  Subject:.*$", '  Subject: "{{ call.caller_name | no_such_filter }}"', original, count=1)
    editor.fill(broken)
    error = page.get_by_role("alert").filter(has_text="fields.Subject")
    error.wait_for(timeout=15_000)
    assert "No filter named 'no_such_filter'" in error.inner_text()
    assert "salesforce_task.yaml: fields.Subject: TemplateAssertionError" in error.inner_text()  # check's wording
    shot(page, "playground_error")


def test_a_saved_mapping_is_used_by_the_next_delivery(bridge: ConsoleBridge, context_factory):
    context = context_factory()
    page = context.new_page()
    sign_in(page, bridge.url, ADMIN_TOKEN)
    page.goto("/console/mappings/salesforce")
    editor = page.get_by_label("Mapping (YAML)")
    edited = re.sub(r"(?m)^  Subject:.*$", '  Subject: "Saved: call with {{ call.caller_name }}"', editor.input_value())
    editor.fill(edited)
    page.get_by_role("button", name="Save").click()
    notice = page.get_by_role("status").filter(has_text="Saved")
    notice.wait_for()
    digest = re.search(r"digest ([0-9a-f]{12})", notice.inner_text()).group(1)
    assert (bridge.home / "mappings" / "salesforce_task.yaml").read_text() == edited

    bridge.send("after-save-1")
    state = bridge.wait_status("after-save-1", "salesforce", "delivered")
    assert state["mapping_digest"] == digest
    task = next(t for t in bridge.salesforce.tasks if t["Agni_Call_Session_Id__c"] == "after-save-1")
    assert task["Subject"] == "Saved: call with John Doe"
    shot(page, "mapping_saved")


def test_a_viewer_sees_no_action_buttons_and_its_forged_post_is_refused(bridge: ConsoleBridge, context_factory):
    context = context_factory()
    page = context.new_page()
    sign_in(page, bridge.url, VIEWER_TOKEN)
    page.goto(f"/console/calls/{SEED}")
    assert page.get_by_role("link", name="Open Task in salesforce").is_visible()
    assert page.get_by_role("button", name="Replay").count() == 0
    page.goto("/console/failures/group?connector=hubspot")
    assert page.get_by_role("button", name="Purge").count() == 0
    page.goto("/console/settings")
    assert page.get_by_role("button", name=re.compile("Run setup")).count() == 0

    forged = context.request.post(
        f"/console/calls/{SEED}/replay", form={"csrf": csrf_of(page), "connector": "salesforce"}
    )
    assert forged.status == 403
    assert "viewer" in forged.text()
    api = bridge.api(f"/admin/calls/{SEED}/replay", token=VIEWER_TOKEN, method="POST", json={})
    assert api.status_code == 403
    shot(page, "viewer_settings")


def test_a_post_without_the_csrf_token_is_refused(bridge: ConsoleBridge, context_factory):
    context = context_factory()
    page = context.new_page()
    sign_in(page, bridge.url, ADMIN_TOKEN)
    page.goto(f"/console/calls/{SEED}")
    before = len(bridge.report(SEED)["history"])
    without = context.request.post(f"/console/calls/{SEED}/replay", form={"connector": "salesforce"})
    wrong = context.request.post(f"/console/calls/{SEED}/replay", form={"csrf": "forged", "connector": "salesforce"})
    assert (without.status, wrong.status) == (403, 403)
    assert "CSRF" in without.text()
    assert len(bridge.report(SEED)["history"]) == before  # nothing was replayed
    page.goto(f"/console/calls/{SEED}")
    shot(page, "csrf_refused")


def test_reading_works_with_javascript_disabled(bridge: ConsoleBridge, context_factory):
    context = context_factory(java_script_enabled=False)
    page = context.new_page()
    sign_in(page, bridge.url, ADMIN_TOKEN)
    assert page.get_by_role("heading", name="salesforce").is_visible()  # the overview
    assert page.get_by_role("img", name=re.compile("salesforce: \\d+ delivered")).is_visible()  # the SVG chart
    assert page.get_by_text(re.compile(r"API calls today: \d+ of 15000")).is_visible()  # Sforce-Limit-Info
    page.get_by_role("link", name="Calls").click()
    page.get_by_label("Email").fill("john@example.com")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(r".*email=john%40example\.com.*"))
    page.get_by_role("link", name=re.compile(r"^\d{4}-\d\d-\d\d")).first.click()
    assert page.get_by_role("heading", name="Transcript").is_visible()
    page.get_by_role("link", name="Failures").click()
    assert page.get_by_role("heading", name="Failures").is_visible()
    page.get_by_role("link", name="Overview").click()
    assert page.get_by_text("Delivering").first.is_visible()
    assert outside_origin(context, bridge.url) == []
    shot(page, "no_javascript_overview")
