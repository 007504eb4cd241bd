"""Routing: which connectors a call goes to."""

from bridge.mapping import render_context
from bridge.routing import Router
from tests.conftest import make_settings


def settings_with(tmp_path, routes, disabled=()):
    connectors = {name: {"type": "jsonl", "enabled": name not in disabled} for name in ("a", "b", "c")}
    return make_settings(tmp_path, connectors=connectors, routes=routes)


def ctx(**call):
    return render_context(call={"call_session_id": "x", **call}, event="call.completed", org_id="o")


def test_without_routes_every_enabled_connector_gets_every_call(tmp_path):
    router = Router(settings_with(tmp_path, [], disabled=("c",)))
    decision = router.route(ctx())
    assert decision.connectors == ("a", "b")
    assert decision.rule == "default: all connectors"
    assert not router.needs_call  # the endpoint then builds no routing context at all


def test_first_matching_route_wins_in_both_condition_styles(tmp_path):
    router = Router(
        settings_with(
            tmp_path,
            [
                {"name": "done", "when": "{{ call.status == 'completed' }}", "connectors": ["a", "b"]},
                {"when": "call.status == 'voicemail'", "connectors": ["b"]},
                {"connectors": ["c"]},
            ],
        )
    )
    assert router.route(ctx(status="completed")).connectors == ("a", "b")
    assert router.route(ctx(status="completed")).rule == "routes[0] (done)"
    assert router.route(ctx(status="voicemail")).connectors == ("b",)
    assert router.route(ctx(status="busy")).connectors == ("c",)
    assert router.needs_call


def test_no_match_routes_nowhere(tmp_path):
    router = Router(settings_with(tmp_path, [{"when": "call.status == 'completed'", "connectors": ["a"]}]))
    decision = router.route(ctx(status="busy"))
    assert decision.connectors == ()
    assert decision.rule == "no route matched"


def test_disabled_connectors_are_dropped_from_routes(tmp_path):
    router = Router(settings_with(tmp_path, [{"connectors": ["a", "c"]}], disabled=("c",)))
    assert router.route(ctx()).connectors == ("a",)


def test_a_condition_over_missing_data_does_not_match(tmp_path):
    router = Router(
        settings_with(
            tmp_path, [{"when": "call.post_call_analysis.goals_met", "connectors": ["a"]}, {"connectors": ["b"]}]
        )
    )
    assert router.route(ctx(post_call_analysis=None)).connectors == ("b",)
    assert router.route(ctx(post_call_analysis={"goals_met": True})).connectors == ("a",)
