"""Regenerates the README's pictures of the console (docs/console/*.png) at laptop and phone widths.

Not part of the normal run: `CONSOLE_SCREENSHOTS=1 .venv/bin/python -m pytest tests/console/test_screenshots.py`.
It drives the same real bridge and fake CRMs as the browser tests, with a few delivered calls, a failure
group and a retrying call, so every page has something to show.
"""

from __future__ import annotations

import os
import re

import pytest

from tests.conftest import ROOT
from tests.console.conftest import ADMIN_TOKEN, HS_TOKEN, ConsoleBridge, sign_in

DOCS = ROOT / "docs" / "console"
SEED = "019d2b3c-8e9f-7a0b-1c2d-4e5f6a7b8c9d"
LAPTOP = {"width": 1366, "height": 860}
PHONE = {"width": 390, "height": 844}

pytestmark = pytest.mark.skipif(
    not os.environ.get("CONSOLE_SCREENSHOTS"), reason="regenerates docs/console/*.png: set CONSOLE_SCREENSHOTS=1"
)


def test_regenerate_the_readme_screenshots(bridge: ConsoleBridge, context_factory):
    bridge.send(SEED)
    names = ["Grace Hopper", "Alan Turing", "Ada Lovelace", "Katherine Johnson"]
    for i, name in enumerate(names):
        bridge.send(f"demo-{i}", caller_name=name, phone=f"+1415555{2000 + i}", agent_name="Riley (AI)")
    for call_id in (SEED, *(f"demo-{i}" for i in range(len(names)))):
        bridge.wait_status(call_id, "hubspot", "delivered")
    bridge.hubspot.token = "rotated"
    for i in range(3):
        bridge.send(f"expired-{i}", caller_name=f"Caller {i}", phone=f"+1415555{3000 + i}")
    for i in range(3):
        bridge.wait_status(f"expired-{i}", "hubspot", "dead")
    bridge.hubspot.token = HS_TOKEN
    DOCS.mkdir(parents=True, exist_ok=True)

    laptop = context_factory(viewport=LAPTOP).new_page()
    sign_in(laptop, bridge.url, ADMIN_TOKEN)
    pages = {
        "overview": "/console/",
        "calls": "/console/calls",
        "call": f"/console/calls/{SEED}",
        "failures": "/console/failures",
        "playground": f"/console/mappings/salesforce?call={SEED}",
        "settings": "/console/settings",
    }
    for name, path in pages.items():
        laptop.goto(path)
        if name == "playground":
            editor = laptop.get_by_label("Mapping (YAML)")
            subject = '  Subject: "Call: {{ call.caller_name }}"'
            editor.fill(re.sub(r"(?m)^  Subject:.*$", subject, editor.input_value()))
            laptop.get_by_text("Call: John Doe").first.wait_for()
            editor.evaluate("element => { element.scrollTop = 0; }")
        laptop.screenshot(path=str(DOCS / f"{name}.png"))

    phone = context_factory(viewport=PHONE, is_mobile=True, has_touch=True).new_page()
    sign_in(phone, bridge.url, ADMIN_TOKEN)
    for name in ("overview", "calls", "call"):
        phone.goto(pages[name])
        phone.screenshot(path=str(DOCS / f"{name}-phone.png"))
