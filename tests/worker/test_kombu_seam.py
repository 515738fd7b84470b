"""The one seam for kombu (worker/kombu_seam.py): every private kombu/Celery name the worker uses
is there and nowhere else, the installed releases have all of them, and a worker on a kombu that
lacks one refuses to start with one line instead of failing mid-delivery."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from worker import kombu_seam
from worker.kombu_seam import NEEDS, check, installed, refusal
from worker.supervisor import supervise

ROOT = Path(__file__).resolve().parents[2]


def test_the_installed_kombu_and_celery_have_every_name_the_seam_relies_on() -> None:
    owners, versions = installed()
    assert check(owners, versions) == []
    assert versions["kombu"].startswith(kombu_seam.KOMBU_SERIES + ".")


def test_the_docstring_lists_exactly_the_names_the_guard_checks() -> None:
    doc = kombu_seam.__doc__ or ""
    for need in NEEDS:
        assert f"{need.owner}.{need.name}" in doc, f"{need.owner}.{need.name} not in the docstring"
    checked = {need.name for need in NEEDS}
    listed = {
        word.split("(")[0].rstrip(":;,.").rsplit(".", 1)[-1]
        for line in doc.splitlines()
        if line.startswith("- ")
        for word in line.split()
        if "._" in word and "__" not in word
    }
    assert listed <= checked, f"listed but not checked: {sorted(listed - checked)}"


def _private_names() -> set[str]:
    """Private names of the kombu and Celery classes the worker meets, and the seam's own."""
    from celery import bootsteps
    from celery.app import base, control, task
    from celery.worker.consumer import consumer, tasks
    from kombu import connection, message, messaging
    from kombu.transport import redis, virtual

    classes: tuple[type, ...] = (
        redis.Channel, redis.QoS, redis.Transport, virtual.Channel, virtual.QoS,
        virtual.Message, virtual.Transport, message.Message, connection.Connection,
        messaging.Consumer, messaging.Producer, task.Task, control.Inspect, control.Control,
        base.Celery, consumer.Consumer, tasks.Tasks, bootsteps.Step, bootsteps.StartStopStep,
    )  # fmt: skip
    names = {n for cls in classes for n in dir(cls) if n.startswith("_")}
    names |= {need.name for need in NEEDS if need.name.startswith("_")}
    return {n for n in names if not n.startswith("__")}


def test_no_other_module_touches_a_private_kombu_or_celery_name() -> None:
    """worker/ subclasses kombu's classes, so even `self._x` there counts, and so does defining
    a method of that name (an override); in the library only other objects' attributes do."""
    private = _private_names()
    found = []
    worker_files = [p for p in (ROOT / "worker").glob("*.py") if p.name != "kombu_seam.py"]
    for path in worker_files + sorted((ROOT / "textlstm").rglob("*.py")):
        in_worker = path.parent.name == "worker"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Attribute) and node.attr in private:
                own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
                if in_worker or not own:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
            elif in_worker and isinstance(node, ast.FunctionDef) and node.name in private:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} def {node.name}")
    assert not found, "private kombu/Celery names outside worker/kombu_seam.py:\n" + "\n".join(
        found
    )


def _stand_in(owner: str, owners: dict[str, Any], drop: str = "", **changed: Any) -> type:
    """A class with what the seam needs of `owner` (copied from the installed one), minus
    `drop`, with `changed` replacing some of it."""
    real = owners[owner]
    attrs = {
        (need.set_by or need.name): getattr(real, need.set_by or need.name)
        for need in NEEDS
        if need.owner == owner
    }
    attrs.pop(drop, None)
    return type(f"StandIn{real.__name__}", (), {**attrs, **changed})


def test_the_guard_refuses_a_kombu_that_lacks_a_name_with_one_line() -> None:
    owners, _ = installed()
    versions = {"kombu": "5.6.3", "celery": "5.6.0"}
    assert check({**owners, "redis.Channel": _stand_in("redis.Channel", owners)}, versions) == []

    old = {**owners, "redis.Channel": _stand_in("redis.Channel", owners, drop="_brpop_sent_at")}
    problems = check(old, versions)
    assert problems == ["kombu 5.6.3 lacks redis.Channel._brpop_sent_at"]
    line = refusal(problems)
    assert line == (
        "textlstm worker needs kombu 5.7.x: kombu 5.6.3 lacks redis.Channel._brpop_sent_at"
    )
    assert "\n" not in line

    def __init__(self: Any) -> None:  # sets up the channel, but no `_queue_cycle`
        self.active_queues: list[str] = []

    no_cycle = {**owners, "redis.Channel": _stand_in("redis.Channel", owners, __init__=__init__)}
    assert check(no_cycle, versions) == [
        "kombu 5.6.3 lacks redis.Channel._queue_cycle (set by redis.Channel.__init__)"
    ]


def test_the_guard_refuses_a_changed_signature() -> None:
    owners, _ = installed()
    versions = {"kombu": "5.8.0", "celery": "6.0.0"}

    def _brpop_start(self: Any, timeout: float | None = None, *, fair: bool = True) -> None: ...

    def start_strategy(self: Any, app: Any, consumer: Any, worker: Any, **kwargs: Any) -> Any: ...

    changed = {
        **owners,
        "redis.Channel": _stand_in("redis.Channel", owners, _brpop_start=_brpop_start),
        "Task": _stand_in("Task", owners, start_strategy=start_strategy),
    }
    problems = check(changed, versions)
    assert problems == [
        "kombu 5.8.0 changed redis.Channel._brpop_start to (timeout, fair), not (timeout)",
        "celery 6.0.0 changed Task.start_strategy to (app, consumer, worker, **kwargs), "
        "not (app, consumer, **kwargs)",
    ]
    assert refusal(problems) == (
        "textlstm worker needs kombu 5.7.x and celery 5.x: kombu 5.8.0 changed "
        "redis.Channel._brpop_start to (timeout, fair), not (timeout); celery 6.0.0 changed "
        "Task.start_strategy to (app, consumer, worker, **kwargs), not (app, consumer, **kwargs)"
    )


def test_several_missing_names_make_one_line() -> None:
    problems = [
        "kombu 5.6.2 lacks redis.Channel._brpop_sent_at",
        "kombu 5.6.2 lacks redis.Channel._flush_brpop_reauth",
    ]
    assert refusal(problems) == (
        "textlstm worker needs kombu 5.7.x: kombu 5.6.2 lacks redis.Channel._brpop_sent_at, "
        "redis.Channel._flush_brpop_reauth"
    )


def test_the_supervisor_does_not_restart_a_process_that_refused_to_start(tmp_path: Path) -> None:
    """Exit status 78 (os.EX_CONFIG) is final: the other processes are stopped, not restarted."""
    runs = tmp_path / "runs"
    refuses = (
        "import os, pathlib, sys\n"
        f"p = pathlib.Path({str(runs)!r})\n"
        "p.write_text(p.read_text() + 'x' if p.exists() else 'x')\n"
        "sys.exit(os.EX_CONFIG)\n"
    )
    waits = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
        "time.sleep(60)\n"
    )
    old = signal.getsignal(signal.SIGTERM)
    code = supervise([([sys.executable, "-c", refuses], {}), ([sys.executable, "-c", waits], {})])
    assert code == os.EX_CONFIG and runs.read_text() == "x"
    assert signal.getsignal(signal.SIGTERM) == old


def test_textlstm_admin_worker_on_an_unfit_kombu_exits_78_with_one_line(
    tmp_path: Path, redis_url: str, queue_name: str
) -> None:
    """The production path: the supervisor starts `celery -A worker.app worker`, whose kombu
    (patched at interpreter start-up, before anything imports it) lacks a name; the worker
    bootstep refuses before connecting, with one line and no traceback, and is not restarted."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "from kombu.transport import redis\ndel redis.Channel._brpop_sent_at\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TEXTLSTM_")},
        "PYTHONPATH": str(site),
        "C_FORCE_ROOT": "1",
        "TEXTLSTM_BROKER_URL": redis_url,
        "TEXTLSTM_QUEUE": queue_name,
        "TEXTLSTM_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
    }
    proc = subprocess.run(
        [sys.executable, "-c", "from textlstm.cli import cli; cli()", "worker", "-c", "1",
         "--device", "cpu", "--metrics-port", "0"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == os.EX_CONFIG, out[-3000:]
    refusals = [line for line in out.splitlines() if line.startswith("textlstm worker needs")]
    assert refusals == [
        f"textlstm worker needs kombu {kombu_seam.KOMBU_SERIES}.x: kombu "
        f"{installed()[1]['kombu']} lacks redis.Channel._brpop_sent_at"
    ], out[-3000:]
    assert "Traceback" not in out and " ready." not in out and "restarting" not in out


def test_the_status_command_is_a_registered_inspect_command() -> None:
    """`textlstm-admin status` broadcasts it with Celery's public `Control.broadcast`."""
    from celery.worker.control import Panel

    import worker.control  # noqa: F401 - registers the command
    from textlstm.ops.fleet import INFO_COMMAND

    assert Panel.meta[INFO_COMMAND].type == "inspect"
