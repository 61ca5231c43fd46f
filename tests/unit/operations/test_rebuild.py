"""`onehci rebuild`'s flow over its journal, with the steps' work replaced by recorders: the
order, the refusals that change nothing, a failed step continued by the same command, and the
destructive reinstall never run twice blindly. The steps themselves run on the lab
(tests/lab/test_rebuild.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from installer import journal
from installer.errors import OnehciError
from installer.operations import rebuild as rb

ORDER = [s.name for s in rb.STEPS]


@pytest.fixture
def loaded(base_loaded):
    return base_loaded


@pytest.fixture
def ran(monkeypatch):
    """Every step's work replaced by a recorder; `fail` makes a step raise once."""
    calls: list[str] = []
    fail: dict[str, BaseException] = {}
    installed = {"value": False}

    def recorder(name, result=None):
        def work(self, *args):
            calls.append(name)
            if name in fail:
                raise fail.pop(name)
            if name == "reinstall":
                installed["value"] = True
            return {"alive": True} if name == "preflight" else result
        return work

    for name in ORDER:
        monkeypatch.setattr(rb.Rebuild, name, recorder(name, f"{name} ok"))
    monkeypatch.setattr(rb.Rebuild, "installed", lambda self: installed["value"])
    return calls, fail, installed


def history(loaded) -> list[dict]:
    folder = loaded.path.parent / "state" / "operations" / "history"
    return [json.loads(p.read_text()) for p in sorted(folder.iterdir())] if folder.exists() else []


def test_every_step_runs_once_in_order_and_the_journal_goes_to_history(loaded, ran):
    calls, _, _ = ran
    done = rb.rebuild(loaded, "n3", say=lambda _: None)
    assert calls == ORDER
    assert done["state"] == "finished" and [s["status"] for s in done["steps"]] == ["done"] * len(ORDER)
    assert journal.current(loaded.path) is None and history(loaded)[0]["target"] == "n3"


def test_a_refused_preflight_changes_nothing_and_leaves_no_operation_open(loaded, ran):
    calls, fail, _ = ran
    fail["preflight"] = OnehciError("n3 cannot be rebuilt now: reasons. Nothing was changed")
    with pytest.raises(OnehciError, match="cannot be rebuilt"):
        rb.rebuild(loaded, "n3", say=lambda _: None)
    assert calls == ["preflight"]
    assert journal.current(loaded.path) is None  # another operation may start
    assert history(loaded)[0]["state"] == "abandoned"


def test_a_failed_step_is_continued_by_the_same_command_without_repeating_earlier_ones(loaded, ran):
    calls, fail, _ = ran
    fail["drain"] = OnehciError("MooseFS still has 3 undergoal after 1800 s")
    with pytest.raises(OnehciError, match="undergoal"):
        rb.rebuild(loaded, "n3", say=lambda _: None)
    assert calls == ORDER[:ORDER.index("drain") + 1]
    assert journal.current(loaded.path)["where"].startswith("step 5/12 drain (failed)")
    calls.clear()
    said: list[str] = []
    rb.rebuild(loaded, "n3", say=said.append)
    assert calls == ORDER[ORDER.index("drain"):]
    assert any("continuing the rebuild of n3 at step 5/12 drain" in line for line in said)


@pytest.mark.parametrize("took_effect", [True, False])
def test_an_interrupted_reinstall_runs_again_only_when_the_node_did_not_call_back(loaded, ran, took_effect):
    calls, fail, installed = ran
    fail["reinstall"] = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        rb.rebuild(loaded, "n3", say=lambda _: None)
    installed["value"] = took_effect  # the callback came (or not) while onehci was away
    calls.clear()
    done = rb.rebuild(loaded, "n3", say=lambda _: None)
    step = next(s for s in done["steps"] if s["name"] == "reinstall")
    if took_effect:
        assert "reinstall" not in calls and step["attempts"] == 1
        assert step["message"] == "found done by its check after an interruption"
    else:
        assert calls[0] == "reinstall" and step["attempts"] == 2
    assert calls[-1] == "healthy"


def test_another_rebuild_cannot_start_while_one_is_unfinished(loaded, ran):
    _, fail, _ = ran
    fail["deploy"] = OnehciError("deploy failed")
    with pytest.raises(OnehciError):
        rb.rebuild(loaded, "n3", say=lambda _: None)
    with pytest.raises(OnehciError, match=r"another operation is unfinished on this site: rebuild n3, stopped at "
                                          r"step 9/12 deploy \(failed\)"):
        rb.rebuild(loaded, "n2", say=lambda _: None)


def test_the_moosefs_master_and_unknown_nodes_are_refused_before_anything(loaded):
    with pytest.raises(OnehciError, match="n1 is the MooseFS master: a reinstall erases its metadata"):
        rb.rebuild(loaded, "n1", say=lambda _: None)
    assert journal.current(loaded.path) is None
    with pytest.raises(OnehciError, match=r"n9 is not a node of .*\(its nodes: n1, n2, n3\)"):
        rb.rebuild(loaded, "n9", say=lambda _: None)
    assert not (loaded.path.parent / "state" / "operations").exists()


def test_the_cli_wants_the_name_typed_or_yes_and_writes_nothing_without(loaded):
    proc = subprocess.run([sys.executable, "-m", "installer", "rebuild", "n3", str(loaded.path)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    assert "needs a confirmation" in proc.stderr and "--yes" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert journal.current(loaded.path) is None


def test_operation_show_and_abandon_tell_what_is_unfinished_and_free_the_site(loaded, ran):
    _, fail, _ = ran
    fail["drain"] = OnehciError("MooseFS still has 3 undergoal after 1800 s")
    with pytest.raises(OnehciError):
        rb.rebuild(loaded, "n3", say=lambda _: None)

    def onehci(*args):
        return subprocess.run([sys.executable, "-m", "installer", "operation", *args, str(loaded.path)],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)

    shown = onehci("show")
    assert shown.returncode == 0
    assert "rebuild n3: interrupted, at step 5/12 drain (failed)" in shown.stdout
    assert " 5. drain        FAILED  (MooseFS still has 3 undergoal after 1800 s)" in shown.stdout
    assert json.loads(onehci("show", "--json").stdout)["next"] == "drain"
    assert onehci("abandon", "--yes", "--reason", "test").returncode == 0
    assert journal.current(loaded.path) is None
    assert json.loads(onehci("show", "--json").stdout) is None
    again = onehci("abandon", "--yes")
    assert again.returncode == 1 and again.stderr.strip() == (
        "error: no operation is unfinished on this site: there is nothing to abandon")


def test_answers_that_cannot_apply_are_refused_before_anything_is_written(loaded, ran):
    with pytest.raises(OnehciError, match="there is no unfinished rebuild n3 whose steps to answer for"):
        rb.rebuild(loaded, "n3", say=lambda _: None, answers={"reinstall": True})
    with pytest.raises(OnehciError, match=r"reinstal: not a step of rebuild \(its steps: preflight, disable"):
        rb.rebuild(loaded, "n3", say=lambda _: None, answers={"reinstal": True})
    assert not (loaded.path.parent / "state" / "operations").exists()


def test_ctrl_c_at_the_question_leaves_no_operation_open(loaded, ran):
    calls, fail, _ = ran
    fail["preflight"] = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        rb.rebuild(loaded, "n3", say=lambda _: None)
    assert calls == ["preflight"] and journal.current(loaded.path) is None


# --- the drain's proof: only a chunk loop started after the mark counts -------------------------


def test_the_drain_waits_for_a_chunk_loop_started_after_the_mark(monkeypatch):
    from installer import mfs
    from installer.operations import storage

    loops = iter([(90, 150), (90, 150), (151, 211)])  # the loop before the mark, twice, then one after it
    monkeypatch.setattr(mfs, "chunk_loop", lambda master: next(loops))
    monkeypatch.setattr(mfs, "chunk_count", lambda master: 20)
    said = []
    storage.wait_loop_after("m", 151, timeout=10, say=said.append, interval=0)
    assert next(loops, None) is None and len(said) == 1 and "next full chunk loop" in said[0]


def test_the_drain_has_nothing_to_prove_without_chunks(monkeypatch):
    from installer import mfs
    from installer.operations import storage

    monkeypatch.setattr(mfs, "chunk_loop", lambda master: (0, 0))  # MooseFS reports no loop on an empty filesystem
    monkeypatch.setattr(mfs, "chunk_count", lambda master: 0)
    storage.wait_loop_after("m", 151, timeout=10, interval=0)


def test_the_drain_stops_with_a_clear_error_when_no_loop_comes(monkeypatch):
    from installer import mfs
    from installer.errors import OnehciError
    from installer.operations import storage

    monkeypatch.setattr(mfs, "chunk_loop", lambda master: (90, 150))
    monkeypatch.setattr(mfs, "chunk_count", lambda master: 20)
    with pytest.raises(OnehciError, match="has not completed a chunk loop in 0 s"):
        storage.wait_loop_after("m", 151, timeout=0, say=lambda line: None, interval=0)
