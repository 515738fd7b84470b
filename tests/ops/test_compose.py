"""Item 1: docker-compose.yml and the Dockerfile say what the docs promise, and every command
in them exists. No Docker engine runs here: `docker compose config -q` is run when the docker
client has the compose plugin, and the structure is always checked with PyYAML."""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from textlstm.cli import cli

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SECRETS = {"POSTGRES_PASSWORD": "pw-test", "REDIS_PASSWORD": "redis-test"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _compose_command() -> list[str] | None:
    """`docker compose` (v2 plugin) where present, else the standalone `docker-compose`
    (scripts/install.sh installs Debian's when it can): both validate the file's schema."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_config_validates(tmp_path: Path) -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", **SECRETS}
    ok = subprocess.run(
        [
            *command,
            "-f",
            str(COMPOSE),
            "--profile",
            "gpu",
            "--profile",
            "monitoring",
            "--profile",
            "tools",
            "--profile",
            "sentinel",
            "--profile",
            "rabbitmq",
            "config",
            "-q",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert ok.returncode == 0, ok.stderr
    missing = subprocess.run(
        [*command, "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        env={"PATH": env["PATH"]},
        cwd=ROOT,
    )
    assert missing.returncode != 0 and "_PASSWORD" in missing.stderr


def test_services_dependencies_and_health_checks(compose: dict[str, Any]) -> None:
    s = compose["services"]
    assert {"redis", "postgres", "migrate", "worker", "worker-gpu", "flower"} <= set(s)
    redis_cmd = s["redis"]["command"]
    assert redis_cmd[redis_cmd.index("--appendonly") + 1] == "yes"
    assert "redis-data:/data" in s["redis"]["volumes"]
    assert any(v.startswith("postgres-data:") for v in s["postgres"]["volumes"])
    assert {"redis-data", "postgres-data", "model-cache"} <= set(compose["volumes"])
    for name in ("redis", "postgres"):
        assert s[name]["healthcheck"]["test"], name
    assert s["migrate"]["command"] == ["db", "upgrade"]
    assert s["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("worker", "worker-gpu"):
        deps = s[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert deps["redis"]["condition"] == deps["postgres"]["condition"] == "service_healthy"
        assert "container_name" not in s[name], "a fixed name would break --scale"
        assert "ports" not in s[name], "host ports would collide under --scale"
        assert s[name]["environment"]["TEXTLSTM_METRICS_PORT"] == "9100"
        assert "9100" in s[name]["healthcheck"]["test"][-1]
    assert s["worker-gpu"]["profiles"] == ["gpu"]
    (device,) = s["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert "whl/cu" in s["worker-gpu"]["build"]["args"]["TORCH_INDEX"]
    assert s["flower"]["profiles"] == ["monitoring"]
    assert "profiles" not in s["worker"] and "profiles" not in s["migrate"]


def test_sentinel_profile_one_replica_three_sentinels_and_workers_on_them(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Profile `sentinel`: `redis` (the first master), one replica, three Sentinels watching it
    under the name the workers' transport options give, and workers whose settings parse."""
    from textlstm.settings import Settings

    s = compose["services"]
    sentinels = [f"sentinel-{i}" for i in (1, 2, 3)]
    for name in ["redis-replica", *sentinels, "worker-sentinel"]:
        assert s[name]["profiles"] == ["sentinel"], name
    replica = s["redis-replica"]["command"]
    assert replica[replica.index("--replicaof") + 1 :][:2] == ["redis", "6379"]
    assert "--masterauth" in replica and "--masterauth" in s["redis"]["command"]
    for name in sentinels:
        script = " ".join(s[name]["command"])
        assert "sentinel monitor textlstm redis 6379 2" in script and "--sentinel" in script
        assert any(v.endswith(":/data") for v in s[name]["volumes"]), "its config must persist"
        assert s[name]["healthcheck"]["test"][-3:] == ["-p", "26379", "ping"]
    env = s["worker-sentinel"]["environment"]
    assert set(sentinels) <= set(s["worker-sentinel"]["depends_on"])
    for key, value in env.items():
        monkeypatch.setenv(key, str(value).replace("${REDIS_PASSWORD:?set REDIS_PASSWORD}", "pw"))
    monkeypatch.setenv("TEXTLSTM_WORKER_CONCURRENCY", "0")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.broker_url.count("sentinel://") == 3
    assert settings.broker_transport_options["master_name"] == "textlstm"
    assert settings.wait_replicas == 1


def test_rabbitmq_profile_a_healthy_node_and_workers_on_it(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Profile `rabbitmq`: one RabbitMQ 3 node with a health check, its data on a volume under
    a fixed node name, credentials from the environment, and workers (and an admin service)
    whose amqp:// settings parse and point at it."""
    from textlstm.broker_options import is_amqp
    from textlstm.settings import Settings

    s = compose["services"]
    for name in ("rabbitmq", "worker-rabbitmq", "admin-rabbitmq"):
        assert s[name]["profiles"] == ["rabbitmq"], name
    node = s["rabbitmq"]
    assert node["image"].startswith("rabbitmq:3.")
    assert node["hostname"] == "rabbitmq", "the node name (and its data) follow the hostname"
    assert "rabbitmq-data:/var/lib/rabbitmq" in node["volumes"]
    assert "rabbitmq-data" in compose["volumes"]
    assert node["healthcheck"]["test"][:2] == ["CMD", "rabbitmq-diagnostics"]
    assert node["environment"]["RABBITMQ_DEFAULT_PASS"] == "${RABBITMQ_PASSWORD:-}"
    script = " ".join(node["command"])  # refuses to start with an empty password
    assert '[ -n "$$RABBITMQ_DEFAULT_PASS" ] ||' in script and "exit 1" in script
    assert all(not str(p).startswith("5672") for p in node.get("ports", []))
    assert all(str(p).startswith("127.0.0.1:") for p in node.get("ports", []))
    for name in ("worker-rabbitmq", "admin-rabbitmq"):
        deps = s[name]["depends_on"]
        assert deps["rabbitmq"]["condition"] == "service_healthy", name
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
    assert s["worker-rabbitmq"]["command"] == ["worker", "--device", "cpu"]
    assert "container_name" not in s["worker-rabbitmq"] and "ports" not in s["worker-rabbitmq"]
    env = s["worker-rabbitmq"]["environment"]
    assert env["TEXTLSTM_METRICS_PORT"] == "9100"
    values = {"${RABBITMQ_USER:-textlstm}": "textlstm", "${RABBITMQ_PASSWORD:-}": "pw",
              "${RABBITMQ_VHOST:-textlstm}": "textlstm",
              "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}": "pg"}  # fmt: skip
    for key, value in env.items():
        value = str(value)
        for var, given in values.items():
            value = value.replace(var, given)
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TEXTLSTM_WORKER_CONCURRENCY", "0")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert is_amqp(settings.broker_url)
    assert settings.broker_url == "amqp://textlstm:pw@rabbitmq:5672/textlstm"
    assert (
        s["admin-rabbitmq"]["environment"]["TEXTLSTM_BROKER_URL"]
        == (s["worker-rabbitmq"]["environment"]["TEXTLSTM_BROKER_URL"])
    )


def test_no_secret_is_baked_in(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    for var in SECRETS:
        # Every use of a password is required from the environment, never defaulted.
        uses = re.findall(r"\$\{" + var + r"([^}]*)\}", text)
        assert uses and all(u.startswith(":?") for u in uses), (var, uses)
    # RabbitMQ's password is needed only by profile `rabbitmq` (compose interpolates every
    # service, so `:?` would make it required for everyone): defaulted to empty, never to a
    # value, and the node refuses to start without it (test above).
    uses = re.findall(r"\$\{RABBITMQ_PASSWORD([^}]*)\}", text)
    assert uses and set(uses) == {":-"}, uses
    assert "PASSWORD=" not in (ROOT / "Dockerfile").read_text()
    assert ".env" in (ROOT / ".dockerignore").read_text().split()


def test_dockerfile_cpu_torch_by_default_with_a_cuda_build_arg() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'ARG TORCH_INDEX="https://download.pytorch.org/whl/cpu"' in text
    assert 'ENTRYPOINT ["textlstm-admin"]' in text
    # (`COPY --from=STAGE` copies between build stages, not from the repository.)
    for path in re.findall(r"^COPY (?!--from=)(\S+) ", text, flags=re.M):
        assert (ROOT / path).exists(), path
    for path in re.findall(r"^COPY ((?:\S+ )+)\./$", text, flags=re.M):
        for p in path.split():
            assert "*" in p or (ROOT / p).exists(), p


def test_dockerfile_installs_the_built_wheel_with_the_pinned_versions() -> None:
    """The image runs from a wheel (no source tree, no editable install), installed with
    constraints.txt, and its default torch is the pinned one."""
    text = (ROOT / "Dockerfile").read_text()
    assert "python -m build --wheel" in text
    assert "pip install -e" not in text
    assert re.search(r'pip install "\$\{whl\}\[\$\{EXTRAS\}\]" -c \S*constraints\.txt', text)
    pinned = re.search(r"^torch==\S+$", (ROOT / "constraints.txt").read_text(), flags=re.M)
    assert pinned, "constraints.txt pins no torch"
    assert f'ARG TORCH_SPEC="{pinned.group(0)}"' in text


def _rest(ctx: click.Context) -> list[str]:
    """Tokens a group left for its subcommand (Click keeps the subcommand's name apart)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # protected_args, Click < 9
        return [*ctx.protected_args, *ctx.args]


def _resolve(argv: list[str]) -> None:
    """Parse `textlstm-admin ARGV` down to the leaf command without running it."""
    ctx = cli.make_context("textlstm-admin", list(argv), resilient_parsing=False)
    cmd: click.Command = cli
    args = _rest(ctx)
    while isinstance(cmd, click.Group) and args:
        name, args = args[0], args[1:]
        sub = cmd.get_command(ctx, name)
        assert sub is not None, f"no command {name!r} in {argv}"
        ctx = sub.make_context(name, list(args), parent=ctx, resilient_parsing=False)
        cmd, args = sub, _rest(ctx)
    assert not isinstance(cmd, click.Group), f"{argv} names a group, not a command"
    assert not args, f"unparsed arguments {args} in {argv}"


def test_every_textlstm_command_in_the_file_exists(compose: dict[str, Any]) -> None:
    ours = {
        name: svc
        for name, svc in compose["services"].items()
        if "build" in svc or str(svc.get("image", "")).startswith("textlstm")
    }
    assert {"migrate", "worker", "worker-gpu", "admin"} <= set(ours)
    for svc in ours.values():
        _resolve(svc["command"])  # the image's ENTRYPOINT is textlstm-admin
    _resolve(["db", "upgrade"])
    with pytest.raises(click.UsageError):
        _resolve(["worker", "--no-such-option"])
    with pytest.raises(AssertionError, match="no command"):
        _resolve(["db", "upgrayedd"])


def test_the_gateway_service(compose: dict[str, Any]) -> None:
    """The HTTP gateway: after the migration, health-checked on /healthz, and an image with
    the api extra."""
    g = compose["services"]["gateway"]
    assert g["command"][0] == "serve-api"
    assert g["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "/healthz" in g["healthcheck"]["test"][-1]
    extras = re.search(r'^ARG EXTRAS="([^"]+)"', (ROOT / "Dockerfile").read_text(), flags=re.M)
    assert extras and "api" in extras.group(1).split(",")


def test_the_gateway_reads_its_tokens_from_a_docker_secret(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    """TEXTLSTM_API_TOKENS_FILE names where compose mounts the `api_tokens` secret (a file on
    the host, kept out of git and of the build context); no token entry is in the
    environment. A file made as docs/gateway.md says (`api-token`'s entry line) admits the
    token it printed."""
    from textlstm.gateway.auth import authenticate
    from textlstm.settings import Settings
    from textlstm.testing.processes import CLI

    g = compose["services"]["gateway"]
    assert "TEXTLSTM_API_TOKENS" not in g["environment"]
    (secret,) = g["secrets"]
    name = secret if isinstance(secret, str) else secret["source"]
    target = name if isinstance(secret, str) else secret.get("target", name)
    assert g["environment"]["TEXTLSTM_API_TOKENS_FILE"] == f"/run/secrets/{target}"
    source = compose["secrets"][name]["file"]
    default = re.fullmatch(r"\$\{[A-Z_]+:-(\./[^}]+)\}", source)
    assert default, f"the secret's file should default to a path in the repository: {source}"
    top = default.group(1).removeprefix("./").split("/")[0]
    assert f"/{top}/" in (ROOT / ".gitignore").read_text().split()
    assert top in (ROOT / ".dockerignore").read_text().split()

    made = subprocess.run(
        [*CLI, "api-token", "--scope", "submit"], capture_output=True, text=True, timeout=60
    )
    assert made.returncode == 0, made.stderr
    fields = dict(line.split(None, 1) for line in made.stdout.splitlines())
    file = tmp_path / "api-tokens"
    file.write_text(f"# made by api-token\n{fields['entry']}\n")
    settings = Settings(api_tokens_file=file, _env_file=None)  # type: ignore[call-arg]
    entry = authenticate(fields["token"], settings.api_token_entries)
    assert entry is not None and entry.scope == "submit"
