"""The container set-up, tested without a Docker engine.

- docker-compose.yml validates against the Compose Specification's JSON schema, raw and after interpolating
  ${...} from .env.example the way compose does, and has the services, commands and environment we promise.
- The Dockerfile has the properties a production image needs (multi-stage, pinned base, runtime lock only,
  non-root, HEALTHCHECK, ENTRYPOINT wq) and .dockerignore lets in exactly what it copies.
- config/docker.yaml is config/default.yaml with only the container differences.
- Every agent service's `command` runs as a local process with the service's (and the image's) environment
  translated for local use, all seven at once against the real Redis: each heartbeats, the image's HEALTHCHECK
  passes, and on SIGTERM each exits 0 within 15 s leaving a final `stopped` heartbeat.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from wavesquant.config import AGENT_NAMES, load_settings

REPO = Path(__file__).resolve().parents[3]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
ENV_EXAMPLE = REPO / ".env.example"
WQ = REPO / ".venv" / "bin" / "wq"
IMAGE_APP_DIR = "/app/"  # the image's WORKDIR; config/ is copied there from the repo

STARTUP_TIMEOUT_S = 90.0  # seven Python processes importing ccxt/pandas at once on a small machine
STOP_TIMEOUT_S = 15.0


# compose-style interpolation --------------------------------------------------------------------------------
class MissingVariable(Exception):
    """A ${VAR:?message} / ${VAR?message} whose variable is unset (or empty): compose refuses to start."""


_REFERENCE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?", re.DOTALL)


def interpolate_text(text: str, env: Mapping[str, str]) -> str:
    """Compose's rules: $$ -> $, $VAR / ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err},
    ${VAR:+alt}, ${VAR+alt}. With a colon the variable must be set and non-empty, without it only set."""

    def replace(m: re.Match[str]) -> str:
        if m.group("escaped"):
            return "$"
        if m.group("named"):
            return env.get(m.group("named"), "")
        braced = _BRACED.fullmatch(m.group("braced"))
        if braced is None:
            raise ValueError(f"invalid interpolation {m.group(0)!r}")
        name, op, arg = braced.group("name"), braced.group("op"), braced.group("arg") or ""
        value = env.get(name)
        if op is None:
            return value or ""
        present = bool(value) if op.startswith(":") else value is not None
        if op.endswith("-"):
            return value if present and value is not None else interpolate_text(arg, env)
        if op.endswith("?"):
            if present and value is not None:
                return value
            raise MissingVariable(f"{name}: {arg}")
        return interpolate_text(arg, env) if present else ""

    return _REFERENCE.sub(replace, text)


def interpolate(node: Any, env: Mapping[str, str]) -> Any:
    """Interpolate every string value (not keys) of a parsed compose file."""
    if isinstance(node, str):
        return interpolate_text(node, env)
    if isinstance(node, dict):
        return {k: interpolate(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, env) for v in node]
    return node


def read_env_file(path: Path) -> dict[str, str]:
    """A compose .env file: KEY=VALUE lines, # comments, optional quotes around the value."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not KEY=VALUE: {line!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].strip()
        env[key.strip()] = value
    return env


def load_compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(raw, dict)
    return raw if env is None else interpolate(raw, env)


# Dockerfile parsing -----------------------------------------------------------------------------------------
@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, rest) per instruction, with comments dropped and `\\` continuations joined."""
    logical: list[str] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    assert not current, "Dockerfile ends inside a line continuation"
    result = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), " ".join(rest.split())))
    return result


def dockerfile_stages() -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the build stages, with ${ARG} resolved in FROM."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, rest in dockerfile_instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            words = rest.split()
            base = interpolate_text(words[0], global_args)
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif keyword == "ARG" and not stages:
            key, _, default = rest.partition("=")
            global_args[key] = default
        elif stages:
            stages[-1].instructions.append((keyword, rest))
    return global_args, stages


def env_instruction_values(stage: Stage) -> dict[str, str]:
    values: dict[str, str] = {}
    for rest in stage.args("ENV"):
        for item in shlex.split(rest):
            key, sep, value = item.partition("=")
            assert sep, f"use ENV KEY=VALUE, not {rest!r}"
            values[key] = value
    return values


def healthcheck_command(stage: Stage) -> str:
    (rest,) = stage.args("HEALTHCHECK")
    before, sep, command = rest.partition(" CMD ")
    assert sep, f"HEALTHCHECK without CMD: {rest!r}"
    assert all(opt.startswith("--") for opt in before.split()), before
    return command.strip()


# .dockerignore ----------------------------------------------------------------------------------------------
def dockerignore_patterns() -> list[tuple[bool, str]]:
    """(is_exception, pattern) in file order."""
    patterns = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        patterns.append((negated, line.lstrip("!").strip().rstrip("/")))
    return patterns


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: `**` spans directories, `*` and `?` stay within one."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def in_build_context(relative: str, patterns: list[tuple[bool, str]]) -> bool:
    """Docker's rule: the last pattern matching the path (or one of its parent directories) decides."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for negated, pattern in patterns:
        regex = pattern_regex(pattern)
        if any(regex.fullmatch(c) for c in candidates):
            included = negated
    return included


# tests: compose file ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    env = read_env_file(ENV_EXAMPLE)
    assert env.get("REDIS_PASSWORD"), ".env.example must document REDIS_PASSWORD with a placeholder"
    return env


@pytest.fixture(scope="module")
def compose_schema(shared_dir: Path) -> dict[str, Any]:
    schema = json.loads((shared_dir / "schemas" / "compose-spec.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return schema


def schema_errors(document: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_file_is_valid_raw_and_interpolated(compose_schema: dict[str, Any],
                                                    example_env: dict[str, str]) -> None:
    assert schema_errors(load_compose(), compose_schema) == []
    interpolated = load_compose(example_env)
    assert schema_errors(interpolated, compose_schema) == []
    # The schema is not a rubber stamp: a misspelt key is rejected.
    broken = json.loads(json.dumps(interpolated))
    broken["services"]["risk"]["restart_policy"] = "always"
    assert schema_errors(broken, compose_schema)


def test_compose_refuses_to_start_without_a_password(example_env: dict[str, str]) -> None:
    for env in ({k: v for k, v in example_env.items() if k != "REDIS_PASSWORD"}, {**example_env, "REDIS_PASSWORD": ""}):
        with pytest.raises(MissingVariable, match="REDIS_PASSWORD"):
            load_compose(env)


def test_interpolation_follows_compose_rules() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate_text("a$$b ${SET} $SET ${UNSET:-d} ${EMPTY:-d} ${EMPTY-d} ${SET:+alt} ${UNSET+alt}.", env) == \
        "a$b v v d d  alt ."
    with pytest.raises(MissingVariable, match="EMPTY: need it"):
        interpolate_text("${EMPTY:?need it}", env)
    assert interpolate_text("${EMPTY?need it}", env) == ""


def test_compose_services_match_the_deployment(example_env: dict[str, str]) -> None:
    text = COMPOSE_FILE.read_text()
    raw = load_compose()
    compose = load_compose(example_env)
    password = example_env["REDIS_PASSWORD"]

    assert "version" not in raw, "the Compose Specification has no top-level version"
    assert password not in text, "the Redis password must come from .env, never from the compose file"
    assert set(compose["services"]) == {"redis", *AGENT_NAMES}

    redis = compose["services"]["redis"]
    assert re.fullmatch(r"redis:7\.2\.\d+-alpine", redis["image"]), redis["image"]
    assert "--requirepass" in " ".join(redis["command"])
    assert redis["environment"]["REDIS_PASSWORD"] == password
    health = " ".join(redis["healthcheck"]["test"])
    assert "redis-cli" in health and "ping" in health and "REDIS_PASSWORD" in health

    # The shared parts come from the x-agent anchor, merged into every agent service.
    assert "x-agent" in raw
    assert len(re.findall(r"^\s+<<: \*agent\s*$", text, re.MULTILINE)) == len(AGENT_NAMES)
    for name in AGENT_NAMES:
        svc = compose["services"][name]
        assert svc["command"] == ["agent", "run", name, "--config", "/app/config/docker.yaml"]
        assert svc["environment"]["WQ_AGENT"] == name
        assert svc["environment"]["WQ_BUS__URL"] == f"redis://:{password}@redis:6379/0"
        assert svc["restart"] == "unless-stopped"
        assert svc["depends_on"] == {"redis": {"condition": "service_healthy"}}
        assert svc["image"] == compose["services"][AGENT_NAMES[0]]["image"]
        assert svc["build"]["context"] == "."
    consumers = {compose["services"][n]["environment"].get("WQ_CONSUMER_ID") for n in AGENT_NAMES}
    assert len(consumers) == len(AGENT_NAMES), "stream consumer names must differ between agents"


def test_env_example_is_the_template_of_a_git_ignored_env() -> None:
    ignored = {line.strip() for line in (REPO / ".gitignore").read_text().splitlines()}
    assert ".env" in ignored
    referenced = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE_FILE.read_text()))
    assert referenced <= set(read_env_file(ENV_EXAMPLE)), "every ${VAR} of the compose file is documented"


def test_docker_config_is_default_with_container_differences() -> None:
    default = yaml.safe_load((REPO / "config" / "default.yaml").read_text())
    docker = yaml.safe_load((REPO / "config" / "docker.yaml").read_text())
    assert docker["bus"]["backend"] == "redis"
    assert docker["logging"]["json_output"] is True
    assert docker["data_feeds"]["source"] == "synthetic", "containers carry no market data files"
    assert docker["execution"]["venue"] == "paper"
    for cfg in (default, docker):
        del cfg["bus"]["backend"], cfg["bus"]["url"], cfg["logging"]["json_output"]
    assert docker == default, "config/docker.yaml drifted from config/default.yaml"


def test_docker_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("WQ_")]:
        monkeypatch.delenv(key)
    settings = load_settings(REPO / "config" / "docker.yaml")
    assert settings.bus.backend == "redis" and settings.logging.json_output


# tests: Dockerfile ------------------------------------------------------------------------------------------
def test_dockerfile_builds_a_small_pinned_non_root_image() -> None:
    _, stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage: a builder and a runtime stage"
    for stage in stages:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", stage.base), \
            f"base image must be an exact, pinned tag: {stage.base}"
    builder, final = stages[0], stages[-1]
    assert builder.name and final.name

    installs = " && ".join(builder.args("RUN"))
    assert re.search(r"pip install [^&]*-r requirements\.lock", installs), installs
    assert re.search(r"pip install [^&]*--no-deps", installs), "the package itself goes in with --no-deps"
    assert "requirements-dev.lock" not in DOCKERFILE.read_text(), "the image installs runtime pins only"
    assert any(re.match(r"requirements\.lock\b", rest) for rest in builder.args("COPY"))

    final_runs = " ".join(final.args("RUN"))
    assert not re.search(r"apt-get|apk |gcc|build-essential|pip install", final_runs), \
        "no build tools or installs in the final stage"
    assert any(rest.startswith(f"--from={builder.name} ") for rest in final.args("COPY")), "final copies the venv"

    env = env_instruction_values(final)
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("PYTHONUNBUFFERED") == "1"
    assert env.get("WQ_LOGGING__JSON_OUTPUT") == "true"

    users = final.args("USER")
    assert users, "the final stage must switch to a non-root user"
    assert users[-1].split(":")[0] in ("10001", "wq") and users[-1] not in ("root", "0")
    assert re.search(r"useradd [^&]*--uid 10001", final_runs)

    assert json.loads(final.args("ENTRYPOINT")[-1]) == ["wq"]
    assert json.loads(final.args("CMD")[-1]) == ["--help"]
    health = healthcheck_command(final)
    assert re.search(r"\bwq agent health \"?\$\{?WQ_AGENT\b", health), health


def test_dockerignore_admits_exactly_what_the_dockerfile_copies() -> None:
    patterns = dockerignore_patterns()
    _, stages = dockerfile_stages()
    copied = []
    for stage in stages:
        for rest in stage.args("COPY"):
            words = [w for w in rest.split() if not w.startswith("--")]
            if rest.startswith("--from="):
                continue
            copied += words[:-1]
    assert copied
    for source in copied:
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
        assert in_build_context(source, patterns), f"COPY {source}: excluded by .dockerignore"
    for secret_or_junk in (".env", ".venv/bin/python", ".git/config", "requirements-dev.lock",
                           "src/wavesquant/__pycache__/cli.cpython-311.pyc", "tests/conftest.py"):
        assert not in_build_context(secret_or_junk, patterns), f"{secret_or_junk} would enter the build context"


# tests: every agent service as a local process --------------------------------------------------------------
@dataclass
class LocalService:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "<no output>"


def local_path(arg: str) -> str:
    """/app/... inside the image -> the same file in the repository."""
    return str(REPO / arg[len(IMAGE_APP_DIR):]) if arg.startswith(IMAGE_APP_DIR) else arg


def local_env(service_env: Mapping[str, str], image_env: Mapping[str, str], redis_url: str,
              prefix: str) -> dict[str, str]:
    """The container's environment for a local process: image ENV, then the service's, with the bus pointed
    at the local (password-less) Redis and this test's key prefix. Stray WQ_ variables of the caller go."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WQ_")}
    env.update({k: v for k, v in image_env.items() if k != "PATH"})
    env.update(service_env)
    env["WQ_BUS__URL"] = redis_url
    env["WQ_BUS__PREFIX"] = prefix
    env["PATH"] = f"{WQ.parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "200"
    return env


def read_heartbeats(redis_url: str, prefix: str) -> dict[str, Any]:
    import redis

    from wavesquant.messages import Heartbeat, decode

    client = redis.Redis.from_url(redis_url)
    try:
        found = {}
        for name in AGENT_NAMES:
            raw = client.get(f"{prefix}status:{name}")
            if raw is not None:
                msg = decode(raw)
                assert isinstance(msg, Heartbeat)
                found[name] = msg
        return found
    finally:
        client.close()


def wait_until(condition: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what()}")
        time.sleep(0.2)


@pytest.fixture
def services(redis_url: str, redis_prefix: str, example_env: dict[str, str],
             tmp_path: Path) -> Iterator[list[LocalService]]:
    """The seven agent services of the compose file, ready to start locally; killed at the end whatever
    happened."""
    assert WQ.is_file(), f"{WQ} missing: run `make install`"
    compose = load_compose(example_env)
    _, stages = dockerfile_stages()
    image_env = env_instruction_values(stages[-1])
    built = []
    for name in AGENT_NAMES:
        svc = compose["services"][name]
        built.append(LocalService(name, [str(WQ), *map(local_path, svc["command"])],
                                  local_env(svc["environment"], image_env, redis_url, redis_prefix),
                                  tmp_path / f"{name}.log"))
    try:
        yield built
    finally:
        for s in built:
            if s.proc is not None and s.proc.poll() is None:
                try:
                    os.killpg(s.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for s in built:
            if s.proc is not None:
                s.proc.wait(timeout=10)


def run_healthcheck(svc: LocalService, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command as the container's shell would run it, /app paths mapped."""
    _, stages = dockerfile_stages()
    command = healthcheck_command(stages[-1]).replace(IMAGE_APP_DIR, f"{REPO}/")
    return subprocess.run(["/bin/sh", "-c", command], env=svc.env, cwd=cwd, capture_output=True, text=True, check=False,
                          timeout=60)


@pytest.mark.redis
@pytest.mark.timeout(240)
def test_every_agent_service_runs_heartbeats_and_stops_cleanly(services: list[LocalService], redis_url: str,
                                                                redis_prefix: str, tmp_path: Path) -> None:
    # Before anything runs, the health check must fail: it really looks at the heartbeat.
    unhealthy = run_healthcheck(services[0], tmp_path)
    assert unhealthy.returncode != 0, unhealthy.stdout + unhealthy.stderr

    for s in services:
        with s.log.open("wb") as log:
            s.proc = subprocess.Popen(s.argv, env=s.env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True)
    pids = {s.name: s.proc.pid for s in services if s.proc is not None}

    def crashed() -> list[str]:
        return [f"{s.name} exited {s.proc.returncode}:\n{s.log_tail()}"
                for s in services if s.proc is not None and s.proc.poll() is not None]

    def all_running() -> bool:
        assert not crashed(), "\n".join(crashed())
        beats = read_heartbeats(redis_url, redis_prefix)
        return all(n in beats and beats[n].pid == pids[n] and beats[n].status == "running" for n in AGENT_NAMES)

    def missing() -> str:
        beats = read_heartbeats(redis_url, redis_prefix)
        return "running heartbeats; have " + ", ".join(f"{n}={b.status}" for n, b in beats.items()) + "\n" + \
            "\n".join(f"--- {s.name}\n{s.log_tail()}" for s in services if s.name not in beats)

    wait_until(all_running, STARTUP_TIMEOUT_S, missing)

    # JSON log lines, as the image asks for with WQ_LOGGING__JSON_OUTPUT.
    for s in services:
        first = next(line for line in s.log.read_text().splitlines() if line.startswith("{"))
        assert "event" in json.loads(first)

    status = subprocess.run([str(WQ), "status"], env=services[0].env, cwd=tmp_path, capture_output=True, check=False,
                            text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    for name in AGENT_NAMES:
        assert name in status.stdout, status.stdout

    healthy = run_healthcheck(next(s for s in services if s.name == "execution"), tmp_path)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "execution: running" in healthy.stdout

    for s in services:
        assert s.proc is not None
        s.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    codes: dict[str, int | None] = {}
    for s in services:
        assert s.proc is not None
        try:
            codes[s.name] = s.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            codes[s.name] = None
    assert codes == {n: 0 for n in AGENT_NAMES}, "\n".join(
        f"--- {s.name}: {codes[s.name]}\n{s.log_tail()}" for s in services if codes[s.name] != 0)

    final = read_heartbeats(redis_url, redis_prefix)
    assert {n: (final[n].status, final[n].pid) for n in final} == {n: ("stopped", pids[n]) for n in AGENT_NAMES}
