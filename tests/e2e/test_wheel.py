"""The built wheel, installed in a fresh venv, run from a folder that is not the repo.

An admin installs the bridge from a wheel and keeps nothing but a config file
(here: config.example.yaml, copied) in some folder, with no mappings/ next to
it. `check`, `preview` and `run` must work from the mappings that ship inside
the package.

The fresh venv gets the wheel only; its dependencies are made importable by a
.pth line naming this environment's site-packages. Python reads .pth files only
in a venv's own site-packages, so this environment's editable-install finder
(a .pth there) is not loaded, and the fresh venv's own site-packages comes
first on sys.path: `bridge` is the wheel's copy, which the test checks.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import httpx
import pytest

from bridge.embedded_redis import free_port
from tests.conftest import EXAMPLE, ROOT, wait_for

# What the build reads (pyproject.toml's readme, packages and package-dir).
SOURCES = ("pyproject.toml", "README.md", "bridge", "connectors", "mappings")


def run(*args: str | Path, cwd: Path | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    command = [str(a) for a in args]
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=admin_env(), timeout=timeout)
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the project's wheel installed; returns its bin/ folder."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "src"  # a copy, so the build writes no build/ or egg-info into the checkout
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", base / "dist", source)
    (wheel,) = (base / "dist").glob("agni_bridge-*.whl")

    target = base / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", target)
    python = target / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-index", wheel)
    purelib = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").stdout.strip())
    ours = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (purelib / "zz_agni_test_dependencies.pth").write_text("".join(f"{path}\n" for path in sorted(ours)))

    where = run(python, "-c", "import bridge, bridge.builtin_mappings as m; print(bridge.__file__)", cwd=base).stdout
    assert where.strip().startswith(str(purelib)), f"bridge imported from {where.strip()}, not the wheel"
    return target / "bin"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """An admin's folder: the example config and a payload, no mappings/."""
    config = (ROOT / "config.example.yaml").read_text()
    assert "  port: 8080\n" in config
    (tmp_path / "config.yaml").write_text(config.replace("  port: 8080\n", f"  port: {free_port()}\n"))
    shutil.copy2(EXAMPLE, tmp_path / "payload.json")
    assert not (tmp_path / "mappings").exists()
    return tmp_path


def admin_env() -> dict[str, str]:
    """The environment without anything that would point the bridge elsewhere than ./config.yaml."""
    unset = ("REDIS_URL", "AGNI_BRIDGE_REDIS_URL", "AGNI_BRIDGE_CONFIG", "BRIDGE_HOST", "PYTHONPATH")
    return {k: v for k, v in os.environ.items() if k not in unset}


def installed(venv: Path, site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`agni-bridge ARGS --config config.yaml`, typed in the admin's folder."""
    command = [venv / "agni-bridge", *args, "--config", "config.yaml"]
    return subprocess.run(command, capture_output=True, text=True, cwd=site, env=admin_env(), timeout=60)


def test_every_package_folder_is_listed_for_the_wheel():
    """pyproject.toml lists its packages (one of them is mappings/); a folder left out is missing from the wheel."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("bridge", "connectors")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert on_disk - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert "bridge.builtin_mappings" in listed


@pytest.mark.wheel
def test_the_installed_wheel_checks_and_previews_with_its_built_in_mappings(venv, site):
    result = installed(venv, site, "check", "--payload", "payload.json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "connector outbox: type jsonl, enabled, mapping jsonl_record.yaml (built-in)" in result.stdout
    assert "mapping salesforce_task.yaml (built-in)" in result.stdout
    assert "mapping hubspot_call.yaml (built-in)" in result.stdout
    assert "rendered payload.json for 1 connector(s)" in result.stdout

    result = installed(venv, site, "preview", "--payload", "payload.json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["outbox"][0]["body"]["subject"] == "Call with John Doe"


@pytest.mark.wheel
def test_the_installed_wheel_runs_and_delivers_the_example_call(venv, site):
    config = (site / "config.yaml").read_text()
    port = int(config.split("  port: ", 1)[1].split()[0])
    process = subprocess.Popen(
        [venv / "agni-bridge", "run", "--config", "config.yaml"],
        cwd=site,
        env=admin_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(lambda: ready() or process.poll() is not None, timeout=45, message="the bridge to be ready")
        assert process.poll() is None, process.stdout.read().decode()
        response = httpx.post(
            f"{base}/webhooks/agni",
            content=(site / "payload.json").read_bytes(),
            headers={"content-type": "application/json"},
            timeout=10,
        )
        assert response.json()["status"] == "accepted"
        outbox = site / "var" / "outbox.jsonl"
        wait_for(lambda: outbox.exists() and outbox.read_text().strip(), timeout=30, message="the outbox record")
        record = json.loads(outbox.read_text().splitlines()[0])
        assert record["record"]["subject"] == "Call with John Doe"
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, process.stdout.read().decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
