"""The operation journal: steps recorded on disk, skipped when done, destructive ones never run
again blindly; one operation per site; and real interruptions (SIGKILL, Ctrl-C) of a process
running tests/unit/journal_worker.py, after which running it again continues at the right step."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest

from installer import journal
from installer.errors import OnehciError
from installer.journal import Journal, Step, StepUncertain
from tests.conftest import REPO

STEPS = [Step("prepare"), Step("wipe", destructive=True, verify="that n3's disks were wiped"), Step("deploy")]


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.delenv("ONEHCI_STATE_DIR", raising=False)
    return tmp_path / "site.yml"  # the journal needs only its directory


def ops(site):
    return site.parent / "state" / "operations"


def never():
    raise AssertionError("a done step ran again")


# --- on disk -------------------------------------------------------------------------


def test_a_finished_operation_is_recorded_step_by_step_and_moves_to_history(site):
    with Journal.open(site, "rebuild", "n3", STEPS) as j:
        assert j.run("prepare", lambda: {"vms": [4, 7]}) == {"vms": [4, 7]}
        on_disk = json.loads((ops(site) / "current.json").read_text())
        assert [(s["name"], s["status"], s["attempts"]) for s in on_disk["steps"]] == [
            ("prepare", "done", 1), ("wipe", "pending", 0), ("deploy", "pending", 0)]
        assert on_disk["steps"][0]["started"] and on_disk["steps"][0]["ended"]
        assert (on_disk["pid"], on_disk["host"], on_disk["command"]) == (os.getpid(), socket.gethostname(),
                                                                         "onehci rebuild n3")
        j.run("wipe", lambda: None)
        j.run("deploy", lambda: None)
        assert j.status()["state"] == "running"
        done = j.finish()
    assert done["state"] == "finished" and done["next"] is None
    assert not (ops(site) / "current.json").exists() and journal.current(site) is None
    (kept,) = (ops(site) / "history").iterdir()
    assert kept.name.endswith("-rebuild-n3.json") and json.loads(kept.read_text())["state"] == "finished"
    for path in (ops(site), ops(site) / "history"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    for path in (kept, ops(site) / ".operation"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    events = [(e["step"], e["event"]) for e in json.loads(kept.read_text())["events"]]
    assert events == [(None, "created"), ("prepare", "started"), ("prepare", "done"), ("wipe", "started"),
                      ("wipe", "done"), ("deploy", "started"), ("deploy", "done"), (None, "finished")]


def test_a_done_step_is_skipped_and_returns_what_it_recorded(site):
    with Journal.open(site, "rebuild", "n3", STEPS) as j:
        j.run("prepare", lambda: ["vm 4"])
    with Journal.open(site, "rebuild", "n3", STEPS) as j:
        assert j.run("prepare", never) == ["vm 4"]
        assert j.status()["events"][-1]["event"] == "resumed"
        assert j.status()["events"][-1]["message"] == "at step 2/3 wipe (not started)"


def test_steps_run_in_their_order(site):
    with Journal.open(site, "rebuild", "n3", STEPS) as j, pytest.raises(ValueError, match="before prepare"):
        j.run("wipe", never)


def test_a_result_that_cannot_be_recorded_fails_the_step(site):
    with Journal.open(site, "rebuild", "n3", STEPS) as j, pytest.raises(TypeError):
        j.run("prepare", lambda: object())
    assert journal.current(site)["steps"][0]["status"] == "failed"


# --- one operation at a time ---------------------------------------------------------


def test_another_unfinished_operation_is_refused(site):
    with Journal.open(site, "rebuild", "n3", STEPS) as j:
        j.run("prepare", lambda: None)
    with pytest.raises(OnehciError) as exc:
        Journal.open(site, "upgrade", "all", [Step("n1")])
    assert str(exc.value) == (
        "another operation is unfinished on this site: rebuild n3, stopped at step 2/3 wipe (not started); "
        "finish it first (`onehci rebuild n3` continues it) or abandon it (docs/operations/README.md)")


def test_a_running_operation_is_refused_even_the_same_one(site):
    with Journal.open(site, "rebuild", "n3", STEPS) as j:
        created = j.status()["created"]
        for kind, target in (("rebuild", "n3"), ("rebuild", "n2")):
            with pytest.raises(OnehciError) as exc:
                Journal.open(site, kind, target, STEPS)
            assert str(exc.value) == (f"rebuild n3 is running on this site (process {os.getpid()} on "
                                      f"{socket.gethostname()}, since {created}): wait for it to end; "
                                      "two operations at once are not safe")
        assert journal.current(site)["state"] == "running"
    assert journal.current(site)["state"] == "stopped"


def test_other_steps_or_options_than_the_unfinished_run_are_refused(site):
    with Journal.open(site, "recover-master", "n1", STEPS, params={"from": "n2"}) as j:
        j.run("prepare", lambda: None)
    with pytest.raises(OnehciError, match=r"was started with other steps \(prepare, wipe, deploy\) than this "
                                          r"onehci has \(prepare, deploy\)"):
        Journal.open(site, "recover-master", "n1", [Step("prepare"), Step("deploy")], params={"from": "n2"})
    with pytest.raises(OnehciError) as exc:
        Journal.open(site, "recover-master", "n1", STEPS, params={"from": "n3"})
    assert str(exc.value) == ("the unfinished recover-master n1 was started with {'from': 'n2'}, not {'from': 'n3'}: "
                              "continue it with the same options (`onehci recover-master n1`) or abandon it "
                              "(docs/operations/README.md)")


# --- failures and interruptions in this process ----------------------------------------


def test_a_lost_ssh_fails_the_step_with_its_message_and_an_ordinary_step_runs_again(site):
    def lost():
        raise OnehciError("ssh: connect to host 192.168.10.13 port 22: No route to host")

    with Journal.open(site, "rebuild", "n3", STEPS) as j, pytest.raises(OnehciError):
        j.run("prepare", lost)
    found = journal.current(site)
    assert (found["state"], found["where"]) == ("interrupted", "step 1/3 prepare (failed)")
    assert found["steps"][0]["message"] == "ssh: connect to host 192.168.10.13 port 22: No route to host"
    with Journal.open(site, "rebuild", "n3", STEPS) as j:
        assert j.run("prepare", lambda: "again") == "again"
        assert j.status()["steps"][0]["attempts"] == 2


def test_ctrl_c_is_recorded_and_raised_again(site):
    def interrupted():
        raise KeyboardInterrupt

    with Journal.open(site, "rebuild", "n3", STEPS) as j, pytest.raises(KeyboardInterrupt):
        j.run("prepare", interrupted)
    assert journal.current(site)["steps"][0]["message"] == "interrupted (Ctrl-C)"


def _interrupted_wipe(site):
    with Journal.open(site, "rebuild", "n3", STEPS) as j:
        j.run("prepare", lambda: None)
        with pytest.raises(OnehciError):
            j.run("wipe", lambda: (_ for _ in ()).throw(OnehciError("ssh: connection closed")))


def test_an_interrupted_destructive_step_without_a_check_stops_and_says_what_to_verify(site):
    _interrupted_wipe(site)
    started = journal.current(site)["steps"][1]["started"]
    with Journal.open(site, "rebuild", "n3", STEPS) as j, pytest.raises(StepUncertain) as exc:
        j.run("prepare", never)
        j.run("wipe", never)
    assert str(exc.value) == (
        f"rebuild n3: step 2/3 wipe is destructive; it started at {started} and failed (ssh: connection closed), "
        "so onehci cannot tell whether it took effect and will not run it again blindly. Check that n3's disks "
        "were wiped, then run `onehci rebuild n3` again telling onehci whether it took effect "
        "(docs/operations/README.md)")


@pytest.mark.parametrize("how, took_effect", [("check", True), ("check", False), ("technician", True),
                                               ("technician", False)])
def test_a_check_or_the_technician_settles_an_interrupted_destructive_step(site, how, took_effect):
    _interrupted_wipe(site)
    ran = []
    with Journal.open(site, "rebuild", "n3", STEPS) as j:
        if how == "technician":
            j.confirm("wipe", took_effect)
        j.run("prepare", never)
        j.run("wipe", lambda: ran.append("wipe"), check_done=(lambda: took_effect) if how == "check" else None)
        step = j.status()["steps"][1]
        with pytest.raises(OnehciError, match="step deploy of rebuild n3 is pending, not interrupted"):
            j.confirm("deploy", True)
    assert step["status"] == "done"
    assert ran == ([] if took_effect else ["wipe"])
    if took_effect:
        assert step["message"] == ("found done by its check after an interruption" if how == "check"
                                   else "confirmed done by the technician")
    else:
        assert step["attempts"] == 2


def test_finish_needs_every_step_done(site):
    with Journal.open(site, "rebuild", "n3", STEPS) as j, pytest.raises(OnehciError) as exc:
        j.run("prepare", lambda: None)
        j.finish()
    assert str(exc.value) == "rebuild n3 cannot finish: wipe, deploy not done"


def test_a_finished_record_left_by_a_crash_goes_to_history(site):
    with Journal.open(site, "rebuild", "n3", [Step("prepare")]) as j:
        j.run("prepare", lambda: None)
        j.data["state"] = "finished"
        j._write()  # as if killed between this write and the move to history
    with Journal.open(site, "upgrade", "all", [Step("n1")]) as j:
        assert j.status()["kind"] == "upgrade"
    (kept,) = (ops(site) / "history").iterdir()
    assert json.loads(kept.read_text())["kind"] == "rebuild"


# --- abandoning ----------------------------------------------------------------------


def test_abandon_keeps_the_record_and_frees_the_site(site):
    with pytest.raises(OnehciError, match="nothing to abandon"):
        journal.abandon(site)
    with Journal.open(site, "rebuild", "n3", STEPS) as j:
        j.run("prepare", lambda: None)
        with pytest.raises(OnehciError) as exc:
            journal.abandon(site)
        assert str(exc.value) == "rebuild n3 is running now: stop it (Ctrl-C) before abandoning it"
    gone = journal.abandon(site, "n3 replaced by hand")
    assert (gone["state"], gone["events"][-1]["message"]) == ("abandoned", "n3 replaced by hand")
    assert journal.current(site) is None
    (kept,) = (ops(site) / "history").iterdir()
    assert json.loads(kept.read_text())["steps"][0]["status"] == "done"
    with Journal.open(site, "upgrade", "all", [Step("n1")]):
        pass


# --- a real process, really interrupted ----------------------------------------------


def _start(site, effects, *args):
    env = {k: v for k, v in os.environ.items() if k != "ONEHCI_STATE_DIR"}
    return subprocess.Popen([sys.executable, "-m", "tests.unit.journal_worker", str(site), str(effects), *args],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _lines(effects):
    return effects.read_text().splitlines() if effects.exists() else []


def _wait_for(effects, line, proc):
    deadline = time.monotonic() + 30
    while line not in _lines(effects):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"no {line!r} in {_lines(effects)}"
        time.sleep(0.02)


def _run(site, effects, *args):
    proc = _start(site, effects, *args)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, err.strip()


def _kill_in(site, effects, step, sig=signal.SIGKILL):
    proc = _start(site, effects, "--block", step)
    _wait_for(effects, f"begin {step}", proc)
    proc.send_signal(sig)
    proc.communicate(timeout=30)
    return proc.returncode


@pytest.mark.parametrize("sig, expected", [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGINT, 130)])
def test_killed_in_a_destructive_step_the_rerun_repeats_nothing(site, tmp_path, sig, expected):
    effects = tmp_path / "effects"
    assert _kill_in(site, effects, "reinstall", sig) == expected
    found = journal.current(site)
    assert (found["state"], found["where"]) == ("interrupted", "step 3/4 reinstall " + (
        "(interrupted)" if sig == signal.SIGKILL else "(failed)"))
    assert [s["status"] for s in found["steps"]] == ["done", "done",
                                                     "started" if sig == signal.SIGKILL else "failed", "pending"]

    code, err = _run(site, effects)  # without an answer it stops at the uncertain step
    assert code == 1 and "step 3/4 reinstall is destructive" in err
    assert "Check that lab3 was reinstalled (onehci pxe state)" in err
    assert _lines(effects) == ["begin prepare", "end prepare", "begin drain", "end drain", "begin reinstall"]

    assert _run(site, effects, "--confirm", "reinstall=done") == (0, "")
    assert _lines(effects) == ["begin prepare", "end prepare", "begin drain", "end drain", "begin reinstall",
                               "begin deploy", "end deploy"]
    assert journal.current(site) is None


@pytest.mark.parametrize("answer, again", [("yes", []), ("no", ["begin drain", "end drain"])])
def test_killed_in_a_checked_destructive_step_its_check_decides(site, tmp_path, answer, again):
    effects = tmp_path / "effects"
    _kill_in(site, effects, "drain")
    assert _run(site, effects, "--check", f"drain={answer}") == (0, "")
    assert _lines(effects) == ["begin prepare", "end prepare", "begin drain", "check drain", *again,
                               "begin reinstall", "end reinstall", "begin deploy", "end deploy"]


def test_killed_in_an_ordinary_step_the_rerun_runs_that_step_only(site, tmp_path):
    effects = tmp_path / "effects"
    _kill_in(site, effects, "deploy")
    assert _run(site, effects) == (0, "")
    assert _lines(effects) == ["begin prepare", "end prepare", "begin drain", "end drain", "begin reinstall",
                               "end reinstall", "begin deploy", "begin deploy", "end deploy"]


def test_a_running_process_keeps_the_site_until_it_dies(site, tmp_path):
    effects = tmp_path / "effects"
    proc = _start(site, effects, "--block", "drain")
    try:
        _wait_for(effects, "begin drain", proc)
        assert journal.current(site)["state"] == "running"
        code, err = _run(site, effects)
        assert code == 1 and err.startswith(f"rebuild lab3 is running on this site (process {proc.pid} on ")
        with pytest.raises(OnehciError, match="rebuild lab3 is running now"):
            journal.abandon(site)
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    assert journal.current(site)["state"] == "interrupted"  # the kernel let go of the lock
    assert journal.abandon(site)["state"] == "abandoned"


def test_the_lab_reinstall_of_a_node_is_refused_while_an_operation_is_unfinished(base_loaded):
    node = base_loaded.site.nodes[1].hostname
    with Journal.open(base_loaded.path, "rebuild", node, STEPS, command=f"onehci rebuild {node} SITE") as j:
        j.run("prepare", lambda: None)
    proc = subprocess.run([sys.executable, "-m", "installer", "lab", "reinstall", node, str(base_loaded.path)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: lab reinstall {node}: refused, rebuild {node} is unfinished on this site (stopped, at step 2/3 wipe "
        f"(not started)): let it finish or run its command again (`onehci rebuild {node} SITE`); `onehci operation "
        "show` shows it. Nothing was changed"]


def test_a_refused_preflight_frees_the_site_and_steps_are_announced_once(site):
    said = []
    with Journal.open(site, "rebuild", "n3", STEPS) as j:
        with pytest.raises(OnehciError, match="would break the goal"):
            j.preflight("prepare", lambda: (_ for _ in ()).throw(OnehciError("would break the goal")), say=said.append)
    assert journal.current(site) is None and said == ["[1/3] prepare"]
    with Journal.open(site, "rebuild", "n3", STEPS) as j:
        j.preflight("prepare", lambda: "ok", say=said.append)
        j.run("wipe", lambda: None, say=said.append)
        assert j.run("prepare", never, say=said.append) == "ok"  # done: neither run nor announced
    assert said == ["[1/3] prepare", "[1/3] prepare", "[2/3] wipe"]
