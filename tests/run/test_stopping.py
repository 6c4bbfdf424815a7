"""Stopping a run: Ctrl-C and SIGTERM stop within seconds, keep every complete output, and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import augledger
from augledger import Interrupted
from augledger.ledger import LedgerRow, read_ledger
from augledger.observe import RunStart
from augledger.run.materialize import materialize
from augledger.run.options import RunOptions
from helpers import SCRIPT, SPEC, make_source, tree_digests


class SignalAfter:
    """Sends this process a real SIGINT once ``after`` rows were journaled."""

    def __init__(self, after: int, signum: int = signal.SIGINT) -> None:
        self.after, self.signum, self.rows, self.sent = after, signum, 0, False

    def on_start(self, start: RunStart) -> None: ...

    def on_rows(self, rows: Sequence[LedgerRow]) -> None:
        self.rows += len(rows)
        if self.rows >= self.after and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signum)

    def on_finish(self, summary: Any) -> None: ...


@pytest.mark.parametrize("workers", [1, 2])
def test_a_signal_stops_the_run_and_a_rerun_completes_it(tmp_path: Path, workers: int) -> None:
    source = make_source(tmp_path / "src", 40, size=96)
    pipe = augledger.compile(augledger.parse_spec(SPEC))
    options = RunOptions(copies=2, workers=workers, chunk_size=1)
    materialize(pipe, source, tmp_path / "clean", options=options)
    out = tmp_path / "o"
    with pytest.raises(Interrupted) as info:
        materialize(pipe, source, out, options=options, observers=[SignalAfter(10)])
    assert info.value.exit_code == 130 and "run the same command again to resume" in str(info.value)
    assert not (out / "manifest.json").exists()
    journaled = [json.loads(line) for line in (out / ".augledger" / "journal.jsonl").read_text().splitlines()]
    assert 10 <= len(journaled) < 80
    on_disk = {p.relative_to(out).as_posix() for p in (out / "augmented").rglob("*.png")}
    assert on_disk == {r["output_path"] for r in journaled}  # every complete output is journaled, no other file
    again = materialize(pipe, source, out, options=options)
    assert again.reused == len(journaled)
    assert tree_digests(out) == tree_digests(tmp_path / "clean")
    assert read_ledger(out).rows() == read_ledger(tmp_path / "clean").rows()


@pytest.mark.parametrize(("signum", "to_group"), [(signal.SIGINT, True), (signal.SIGTERM, False), (signal.SIGTERM, True)])
def test_ctrl_c_or_sigterm_on_the_cli_with_two_workers(tmp_path: Path, signum: int, to_group: bool) -> None:
    """A terminal's Ctrl-C reaches the whole process group: workers must not print tracebacks.

    SIGTERM to the main process alone (a service manager) stops as cleanly; SIGTERM to the whole
    group ends the workers at once: the run still exits 143 with the hint, and the rerun redoes
    what the workers had not handed back.
    """
    source = make_source(tmp_path / "src", 60, size=192)
    spec = tmp_path / "aug.json"
    spec.write_text(json.dumps(SPEC))
    args = [SCRIPT, "run", str(spec), "--source", str(source), "--copies", "3", "--workers", "2"]
    out = tmp_path / "o"
    journal = out / ".augledger" / "journal.jsonl"
    proc = subprocess.Popen([*args, "--out", str(out)], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (journal.is_file() and journal.read_bytes().count(b"\n") >= 20):
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be stopped"
    sent = time.monotonic()
    if to_group:
        os.killpg(proc.pid, signum)  # like a terminal: the main process and its workers
    else:
        os.kill(proc.pid, signum)
    _stdout, stderr = proc.communicate(timeout=60)
    took = time.monotonic() - sent
    assert proc.returncode == 128 + signum, stderr
    assert took < 5, f"stopping took {took:.1f}s"
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert "run the same command again to resume" in stderr
    journaled = {json.loads(line)["output_path"] for line in journal.read_text().splitlines()}
    on_disk = {p.relative_to(out).as_posix() for p in (out / "augmented").rglob("*.png")}
    if signum == signal.SIGINT or not to_group:
        assert on_disk == journaled  # every complete output was handed back and journaled
    else:
        assert journaled <= on_disk
    resumed = subprocess.run([*args, "--out", str(out)], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed: {len(journaled)} output(s) were already complete" in resumed.stdout
    clean = tmp_path / "clean"
    subprocess.run([*args, "--out", str(clean)], check=True, capture_output=True)
    assert tree_digests(out) == tree_digests(clean)


KILL_SCRIPT = """
import os, signal, sys
from pathlib import Path
import augledger
from augledger.ledger import parquet
from augledger.run import shards
from augledger.run.materialize import materialize
from augledger.run.options import RunOptions
phase, calls = sys.argv[3], [0]

def killer(real):
    def wrapped(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 5:
            os.kill(os.getpid(), signal.SIGKILL)  # no finally, no cleanup: as the OOM killer does it
        return real(*args, **kwargs)
    return wrapped

if phase == "packing":
    shards.ShardPacker.add = killer(shards.ShardPacker.add)
else:
    parquet.LedgerWriter.__init__.__kwdefaults__["batch_rows"] = 2  # many row groups: die between two of them
    parquet.LedgerWriter._flush = killer(parquet.LedgerWriter._flush)
spec = {spec}
pipe = augledger.compile(augledger.parse_spec(spec))
materialize(pipe, sys.argv[1], sys.argv[2], options=RunOptions(copies=2, format="webdataset", shard_max_count=4))
"""


@pytest.mark.parametrize("phase", ["packing", "ledger"])
def test_killed_while_packing_shards_or_writing_the_ledger_then_resumed(tmp_path: Path, phase: str) -> None:
    import sys

    source = make_source(tmp_path / "src", 12)
    pipe = augledger.compile(augledger.parse_spec(SPEC))
    options = RunOptions(copies=2, format="webdataset", shard_max_count=4)
    materialize(pipe, source, tmp_path / "clean", options=options)
    out = tmp_path / "o"
    script = KILL_SCRIPT.replace("{spec}", repr(SPEC))
    killed = subprocess.run([sys.executable, "-c", script, str(source), str(out), phase], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (out / "manifest.json").exists()
    again = materialize(pipe, source, out, options=options)
    assert again.exit_code == 0
    assert tree_digests(out) == tree_digests(tmp_path / "clean")
    assert not [p for p in out.rglob("*") if ".tmp" in p.name and ".augledger" not in p.parts]


def test_a_second_signal_does_not_wait(tmp_path: Path) -> None:
    import sys

    script = (
        "import os, signal, time\n"
        "from augledger.run.stopping import StopSignals\n"
        "with StopSignals() as stop:\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    assert stop.stopped\n"
        "    os.kill(os.getpid(), signal.SIGTERM)  # a user who does not want to wait\n"
        "    time.sleep(5)\n"
        "print('still here')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert proc.returncode == -signal.SIGTERM and "still here" not in proc.stdout


def test_workers_leave_sigint_to_the_main_process_and_die_on_sigterm(tmp_path: Path) -> None:
    """A forked worker inherits the run's SIGTERM handler; left so, it would only log on the
    executor's terminate() and the run would hang after another worker died."""
    import sys

    script = (
        "import os, signal, sys\n"
        "from augledger.run.stopping import StopSignals, ignore_stop_signals\n"
        "with StopSignals():\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        ignore_stop_signals()\n"
        "        os.kill(os.getpid(), signal.SIGINT)  # ignored\n"
        "        os.kill(os.getpid(), signal.SIGTERM)  # the default: the worker ends\n"
        "        os._exit(0)\n"
        "    _, status = os.waitpid(pid, 0)\n"
        "print(os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "True", out.stderr
