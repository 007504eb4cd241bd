"""Mappings: rendering, types, limits, value maps, errors that name file and field, and the sandbox."""

import json
import os
from pathlib import Path

import pytest

from bridge.errors import MappingError
from bridge.mapping import MappingLoader, render_context
from bridge.templating import TRUNCATION_MARKER
from tests.conftest import EXAMPLE, ROOT


def context(**overrides):
    payload = json.loads(EXAMPLE.read_text())
    payload["data"].update(overrides)
    return render_context(call=payload["data"], event=payload["event"], org_id=payload["org_id"], connector="t")


def mapping(tmp_path: Path, text: str, name: str = "m.yaml"):
    (tmp_path / name).write_text(text)
    return MappingLoader(tmp_path).load(name)


def render_one(tmp_path: Path, template: str, **overrides):
    m = mapping(tmp_path, "omit_empty: false\nfields:\n  x: " + json.dumps(template) + "\n")
    return m.render(context(**overrides))["x"]


def test_the_issue_example_renders(tmp_path):
    m = mapping(
        tmp_path,
        'fields:\n  Subject: "Call with {{ call.caller_name or call.phone }}"\n'
        '  Description: "{{ call.summary }}\\n\\nNext steps: {{ call.post_call_analysis.next_steps }}'
        '\\nRecording: {{ call.recording_url }}"\n',
    )
    record = m.render(context())
    assert record["Subject"] == "Call with John Doe"
    assert record["Description"].startswith("Customer called about their order #4521.")
    assert "Next steps: No follow-up needed." in record["Description"]
    assert record["Description"].endswith("Recording: https://storage.agniai.com/rec/019d2b3c-8e9f.mp3")


def test_missing_values_render_empty_never_none(tmp_path):
    assert (
        render_one(
            tmp_path,
            "[{{ call.summary }}|{{ call.post_call_analysis.next_steps }}]",
            summary=None,
            post_call_analysis=None,
        )
        == "[|]"
    )
    assert render_one(tmp_path, "[{{ call.no_such_field.deeper }}]") == "[]"


def test_empty_fields_are_omitted_by_default(tmp_path):
    m = mapping(tmp_path, 'fields:\n  A: "{{ call.summary }}"\n  B: "x"\n')
    assert m.render(context(summary=None)) == {"B": "x"}


def test_typed_fields_are_converted(tmp_path):
    m = mapping(
        tmp_path,
        "fields:\n"
        '  n: {value: "{{ call.duration_sec }}", type: int}\n'
        '  f: {value: "{{ call.cost_total }}", type: float}\n'
        '  b: {value: "{{ call.post_call_analysis.goals_met }}", type: bool}\n'
        '  d: {value: "{{ call.started_at }}", type: date}\n'
        '  t: {value: "{{ call.started_at }}", type: datetime}\n'
        "  literal: 7\n",
    )
    assert m.render(context()) == {
        "n": 125,
        "f": 0.42,
        "b": True,
        "d": "2026-03-24",
        "t": "2026-03-24T18:30:00.000Z",
        "literal": 7,
    }


def test_a_value_that_cannot_be_converted_names_file_and_field(tmp_path):
    m = mapping(tmp_path, 'fields:\n  Duration: {value: "{{ call.summary }}", type: int}\n')
    with pytest.raises(MappingError) as info:
        m.render(context())
    assert str(info.value).startswith("m.yaml: fields.Duration: cannot convert")


def test_max_length_truncates_with_a_visible_marker(tmp_path):
    m = mapping(tmp_path, 'fields:\n  S: {value: "{{ call.summary }}", max_length: 40}\n')
    value = m.render(context())["S"]
    assert len(value) <= 40
    assert value.endswith(TRUNCATION_MARKER)
    assert render_one(tmp_path, "{{ 'abcdef' | limit(100) }}") == "abcdef"


def test_transcript_filter_makes_readable_lines(tmp_path):
    text = render_one(tmp_path, "{{ call.transcripts | transcript }}")
    assert text.splitlines() == [
        "[00:00] Agent: Hello! Thanks for calling Acme Support. How can I help you today?",
        "[00:03] Customer: Hi, I wanted to check on my order number 4521.",
        "[00:05] Agent: Of course! Let me look that up for you. Order 4521 shipped yesterday and the tracking "
        "number is TRK-98765. It should arrive by Friday.",
    ]


def test_phone_filters(tmp_path):
    assert render_one(tmp_path, "{{ '(415) 555-0100' | e164 }}") == "+14155550100"
    assert render_one(tmp_path, "{{ call.phone | national }}") == "4155550100"
    assert render_one(tmp_path, "{{ '020 7946 0018' | e164('GB') }}") == "+442079460018"
    assert render_one(tmp_path, "{{ 'not a number' | e164 }}") == "not a number"


def test_date_filters(tmp_path):
    assert render_one(tmp_path, "{{ call.started_at | epoch_ms }}") == "1774377000000"
    assert render_one(tmp_path, "{{ call.started_at | add_days(3) }}") == "2026-03-27"
    assert render_one(tmp_path, "{{ call.duration_sec | seconds_to_ms }}") == "125000"
    assert render_one(tmp_path, "{{ call.started_at | date }}", started_at=None) == ""


def test_value_maps_translate_with_a_default(tmp_path):
    m = mapping(
        tmp_path,
        "value_maps:\n  disposition: {issue_resolved: Resolved, meeting_booked: Meeting, _default: Other}\n"
        "fields:\n  D: \"{{ call.post_call_analysis.disposition | lookup('disposition') }}\"\n",
    )
    assert m.render(context())["D"] == "Resolved"
    assert m.render(context(post_call_analysis={"disposition": "ISSUE_RESOLVED"}))["D"] == "Resolved"
    assert m.render(context(post_call_analysis={"disposition": "wrong_number"}))["D"] == "Other"


def test_an_unknown_value_map_names_file_and_field(tmp_path):
    m = mapping(tmp_path, "fields:\n  D: \"{{ call.status | lookup('nope') }}\"\n")
    with pytest.raises(MappingError) as info:
        m.render(context())
    assert "m.yaml: fields.D: KeyError" in str(info.value) and "nope" in str(info.value)


def test_syntax_errors_name_file_field_and_line(tmp_path):
    with pytest.raises(MappingError) as info:
        mapping(tmp_path, 'fields:\n  Subject: "{{ call.caller_name "\n')
    assert "m.yaml: fields.Subject: TemplateSyntaxError" in str(info.value)


def test_unknown_filters_are_caught_when_the_file_loads(tmp_path):
    with pytest.raises(MappingError) as info:
        mapping(tmp_path, 'fields:\n  Subject: "{{ call.caller_name | shout }}"\n')
    assert "fields.Subject" in str(info.value) and "shout" in str(info.value)


def test_unknown_mapping_keys_are_rejected(tmp_path):
    with pytest.raises(MappingError) as info:
        mapping(tmp_path, 'feilds:\n  Subject: "x"\n')
    assert "m.yaml: " in str(info.value) and "feilds: unknown key" in str(info.value)


def test_required_fields_refuse_to_render_empty(tmp_path):
    m = mapping(tmp_path, 'fields:\n  Who: {value: "{{ call.caller_email }}", required: true}\n')
    with pytest.raises(MappingError) as info:
        m.render(context(caller_email=None))
    assert "fields.Who: rendered empty but the field is required" in str(info.value)


def test_follow_up_renders_only_when_its_condition_holds(tmp_path):
    m = mapping(
        tmp_path,
        "fields: {A: x}\nfollow_up:\n  enabled: true\n  due_in_days: 2\n"
        '  fields: {Subject: "Follow up with {{ call.caller_name }}", Due: "{{ due_date }}"}\n',
    )
    assert m.render_follow_up(context()) is None  # goals met in the seed example
    pending = context(post_call_analysis={"next_steps": "Send quote", "goals_met": False})
    assert m.render_follow_up(pending) == {"Subject": "Follow up with John Doe", "Due": "2026-03-26"}
    assert m.render_follow_up(context(post_call_analysis={"next_steps": None, "goals_met": False})) is None


def test_every_shipped_mapping_loads_and_renders_the_seed_example():
    loader = MappingLoader(ROOT / "mappings")
    files = sorted((ROOT / "mappings").glob("*.yaml"))
    assert files
    for path in files:
        assert loader.load(path.name).render(context())


# -- the sandbox ---------------------------------------------------------------------

MALICIOUS = [
    "{{ call.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ call.items.__globals__ }}",
    "{{ self.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.environ }}",
    "{{ lipsum.__globals__['os'].environ }}",
    "{{ config }}{{ request }}{{ environ }}",
    "{% set x = call.update({'a': 1}) %}",
    "{{ 'x' * 100000000 }}",
    "{{ 9 ** 99999999 }}",
    "{{ range(10000000) | list }}",
]


@pytest.mark.parametrize("template", MALICIOUS)
def test_a_malicious_mapping_cannot_reach_python_internals_files_or_environment(tmp_path, template, monkeypatch):
    monkeypatch.setenv("SUPER_SECRET", "s3cr3t-value")
    try:
        out = render_one(tmp_path, template)
    except MappingError:
        return  # refused: the sandbox raised, and the error names the field
    assert "s3cr3t-value" not in out
    assert "os" not in out.split() and "class" not in out
    assert len(out) < 100_000


def test_the_environment_is_not_reachable_even_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("SUPER_SECRET", "s3cr3t-value")
    assert "SUPER_SECRET" in os.environ
    out = render_one(tmp_path, "{{ env.SUPER_SECRET }}{{ environ }}{{ os }}")
    assert out == ""
