"""The journal of a long operation (rebuild, add-node, recover-master, upgrade): its fixed,
ordered steps and how far it got, kept in the site's state directory so that running the same
command again after Ctrl-C, a crash or a lost SSH connection continues where it stopped.

    state/operations/current.json    the site's one unfinished operation
    state/operations/history/        finished and abandoned ones, START-KIND-TARGET.json
    state/operations/.operation      the lock held by the process running it

Every step transition (started, done, failed) rewrites current.json atomically (temp file,
fsync, rename), so a process killed at any instant leaves the last transition on disk. A step
left `started` or `failed` was interrupted: an ordinary step runs again (it must be safe to
repeat), a destructive one never runs again blindly (see Journal.run).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from installer import state
from installer.errors import OnehciError
from installer.i18n import _

FORMAT = 1
PENDING, STARTED, DONE, FAILED = "pending", "started", "done", "failed"
# what an operation is, as status() reports it
RUNNING, INTERRUPTED, STOPPED, FINISHED, ABANDONED = "running", "interrupted", "stopped", "finished", "abandoned"
_LOCK = "operation"


@dataclass(frozen=True)
class Step:
    """One step of an operation. `verify` says, for a destructive step, what the technician
    must look at when onehci cannot tell whether an interrupted run of it took effect: a text,
    or a function giving it in the technician's language when it is said."""

    name: str
    destructive: bool = False
    verify: str | Callable[[], str] = ""

    def what_to_verify(self) -> str:
        return self.verify() if callable(self.verify) else self.verify


class StepUncertain(OnehciError):
    """A destructive step was interrupted and nothing says whether it took effect."""


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def _dir(site_path: str | Path) -> Path:
    return state.state_dir(site_path) / "operations"


def _describe(data: dict) -> str:
    return f"{data['kind']} {data['target']}"


def _where(data: dict) -> str:
    """The step an unfinished operation stopped at, for messages."""
    steps = data["steps"]
    for number, step in enumerate(steps, 1):
        if step["status"] != DONE:
            where = {STARTED: _("step {number}/{total} {name} (interrupted)"),
                     FAILED: _("step {number}/{total} {name} (failed)")}.get(
                step["status"], _("step {number}/{total} {name} (not started)"))
            return where.format(number=number, total=len(steps), name=step["name"])
    return _("its end (every step done)")


def _state_of(data: dict, running: bool) -> str:
    if data.get("state") in (FINISHED, ABANDONED):
        return data["state"]
    if running:
        return RUNNING
    statuses = {s["status"] for s in data["steps"]}
    return INTERRUPTED if statuses & {STARTED, FAILED} else STOPPED


def _public(data: dict, running: bool) -> dict:
    """The journal as `--json` shows it: results stay in (they are the steps' own records)."""
    steps = data["steps"]
    following = next((s["name"] for s in steps if s["status"] != DONE), None)
    return {"kind": data["kind"], "target": data["target"], "command": data["command"],
            "params": data["params"], "state": _state_of(data, running), "created": data["created"],
            "updated": data["updated"], "pid": data["pid"], "host": data["host"], "next": following,
            "where": _where(data), "steps": steps, "events": data["events"]}


class Journal:
    """An open (and locked) journal; use it as a context manager so the lock is let go."""

    def __init__(self, directory: Path, data: dict, lock: IO, steps: Sequence[Step]):
        self.directory = directory
        self.path = directory / "current.json"
        self.data = data
        self._lock: IO | None = lock
        # the Step objects stay here: their `verify` texts are the code's words, not records
        self._steps = {s.name: s for s in steps}

    # --- opening ------------------------------------------------------------------

    @classmethod
    def open(cls, site_path: str | Path, kind: str, target: str, steps: Sequence[Step],
             params: dict | None = None, command: str = "") -> Journal:
        """The journal of KIND on TARGET: the unfinished one, resumed, or a new one.

        Refuses when another process runs an operation on the site now, when another
        operation is unfinished (one at a time: a rebuild during an upgrade is not safe), or
        when the unfinished one was started with other steps or other parameters."""
        directory = state.ensure(_dir(site_path))
        lock = state.hold(directory, _LOCK)
        if lock is None:
            found = state.read_json(directory / "current.json", None)
            if found:
                raise OnehciError(_("{operation} is running on this site (process {pid} on {host}, since {created}): "
                                    "wait for it to end; two operations at once are not safe").format(
                    operation=_describe(found), pid=found["pid"], host=found["host"], created=found["created"]))
            raise OnehciError(_("another onehci operation is running on this site: wait for it to end; two operations "
                                "at once are not safe"))
        try:
            # through JSON and back: compared with the recorded ones, a tuple must equal its list
            data = cls._load_or_create(directory, kind, target, list(steps), json.loads(json.dumps(params or {})),
                                       command or f"onehci {kind} {target}")
        except BaseException:
            lock.close()
            raise
        journal = cls(directory, data, lock, steps)
        journal.site_path = site_path
        journal._write()
        return journal

    @staticmethod
    def _load_or_create(directory: Path, kind: str, target: str, steps: list[Step], params: dict,
                        command: str) -> dict:
        names = [s.name for s in steps]
        if len(set(names)) != len(names):
            raise ValueError(f"step names repeat: {names}")
        found = state.read_json(directory / "current.json", None)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "updated": _now()}
        if found is not None and found.get("state") in (FINISHED, ABANDONED):
            _to_history(directory, found)  # a crash between the history copy and the removal
            found = None
        if found is None:
            return {"format": FORMAT, "kind": kind, "target": target, "command": command, "params": params,
                    "state": RUNNING, "created": me["updated"], **me,
                    "steps": [{"name": s.name, "destructive": s.destructive, "status": PENDING, "started": None,
                               "ended": None, "message": "", "attempts": 0, "result": None} for s in steps],
                    "events": [{"at": me["updated"], "step": None, "event": "created", "message": ""}]}
        if (found["kind"], found["target"]) != (kind, target):
            raise OnehciError(
                _("another operation is unfinished on this site: {operation}, stopped at {where}; "
                  "finish it first (`{command}` continues it) or abandon it (docs/operations/README.md)").format(
                    operation=_describe(found), where=_where(found), command=found["command"]))
        recorded = [(s["name"], s["destructive"]) for s in found["steps"]]
        if recorded != [(s.name, s.destructive) for s in steps]:
            raise OnehciError(
                _("the unfinished {operation} was started with other steps ({recorded}) than this onehci has "
                  "({steps}): finish it with the onehci that started it, or abandon it (docs/operations/README.md)")
                .format(operation=_describe(found), recorded=", ".join(n for n, _destructive in recorded),
                        steps=", ".join(names)))
        if found["params"] != params:
            raise OnehciError(_("the unfinished {operation} was started with {recorded}, not {params}: continue it "
                                "with the same options (`{command}`) or abandon it (docs/operations/README.md)").format(
                operation=_describe(found), recorded=found["params"], params=params, command=found["command"]))
        found.update(me)
        found["events"].append({"at": me["updated"], "step": None, "event": "resumed",
                                "message": _("at {where}").format(where=_where(found))})
        return found

    # --- steps --------------------------------------------------------------------

    def _step(self, name: str) -> tuple[int, dict]:
        for index, step in enumerate(self.data["steps"]):
            if step["name"] == name:
                return index, step
        raise ValueError(f"{_describe(self.data)} has no step {name!r}")

    def _record(self, step: dict | None, event: str, note: str = "", **fields: Any) -> None:
        now = _now()
        if step is not None:
            step.update(fields)
        self.data["updated"] = now
        self.data["events"].append({"at": now, "step": step and step["name"], "event": event, "message": note})
        self._write()

    def _write(self) -> None:
        if self._lock is None:
            raise OnehciError(_("the journal of {operation} is closed").format(operation=_describe(self.data)))
        state.write_json(self.path, self.data)

    def preflight(self, name: str, fn: Callable[[], Any], say: Callable[[str], None] | None = None) -> Any:
        """Run the first step NAME, whose refusal (or the technician's no, or Ctrl-C at its
        question) means nothing was changed: the journal is then abandoned and the site freed."""
        try:
            return self.run(name, fn, say=say)
        except BaseException:
            self.close()
            abandon(self.site_path, _("refused by the preflight or not confirmed: nothing was changed"))
            raise

    def run(self, name: str, fn: Callable[[], Any], check_done: Callable[[], bool] | None = None,
            say: Callable[[str], None] | None = None) -> Any:
        """Run step NAME unless it is done; return fn's result (kept in the journal, so it must
        be JSON; a skipped step returns the result recorded when it ran, None when a check or the
        technician settled it). SAY, when given, announces a step that runs: `[3/12] drain`.

        A destructive step found `started` or `failed` was interrupted part-way, or fully
        done with its record lost. It is never run again blindly: CHECK_DONE() decides (True:
        it took effect, recorded done and skipped; False: nothing was done, it is safe to run
        again); without a check the operation stops with StepUncertain, telling what to
        verify, until the technician answers through confirm()."""
        index, step = self._step(name)
        earlier = [s["name"] for s in self.data["steps"][:index] if s["status"] != DONE]
        if earlier:
            raise ValueError(f"step {name} of {_describe(self.data)} before {', '.join(earlier)}")
        if step["status"] == DONE:
            return step["result"]
        if say is not None:
            say(f"[{index + 1}/{len(self.data['steps'])}] {name}")
        if step["status"] in (STARTED, FAILED) and step["destructive"]:
            if check_done is None:
                raise StepUncertain(self._uncertain(index, step))
            if check_done():
                self._record(step, "checked", _("its check found it done"), status=DONE, ended=_now(),
                             message=_("found done by its check after an interruption"))
                return None
            self._record(step, "checked", _("its check found it not done: running it again"))
        self._record(step, STARTED, status=STARTED, started=_now(), ended=None, message="",
                     attempts=step["attempts"] + 1)
        try:
            result = fn()
            json.dumps(result)  # a result that cannot be recorded must not leave a half-written step
        except KeyboardInterrupt:
            self._record(step, FAILED, _("interrupted (Ctrl-C)"), status=FAILED, ended=_now(),
                         message=_("interrupted (Ctrl-C)"))
            raise
        except BaseException as exc:
            message = (str(exc).strip() or type(exc).__name__)[:1000]
            self._record(step, FAILED, message, status=FAILED, ended=_now(), message=message)
            raise
        self._record(step, DONE, status=DONE, ended=_now(), result=result)
        return result

    def _uncertain(self, index: int, step: dict) -> str:
        steps = self.data["steps"]
        if step["status"] == FAILED:
            text = _("{operation}: step {number}/{total} {name} is destructive; it started at {started} and failed "
                     "({message}), so onehci cannot tell whether it took effect and will not run it again blindly. "
                     "Check {verify}, then run `{command}` again telling onehci whether it took effect "
                     "(docs/operations/README.md)")
        else:
            text = _("{operation}: step {number}/{total} {name} is destructive; it started at {started} and was "
                     "interrupted (the process running it ended), so onehci cannot tell whether it took effect and "
                     "will not run it again blindly. Check {verify}, then run `{command}` again telling onehci "
                     "whether it took effect (docs/operations/README.md)")
        verify = self._steps[step["name"]].what_to_verify()
        return text.format(operation=_describe(self.data), number=index + 1, total=len(steps), name=step["name"],
                           started=step["started"], message=step["message"], verify=verify or _("what it does"),
                           command=self.data["command"])

    def confirm(self, name: str, done: bool) -> None:
        """The technician's answer about an interrupted step: it took effect (DONE: recorded
        done, skipped) or it did not (not DONE: it runs again at its turn)."""
        step = self._step(name)[1]
        if step["status"] not in (STARTED, FAILED):
            raise OnehciError(_("step {name} of {operation} is {status}, not interrupted: there is nothing to confirm")
                              .format(name=name, operation=_describe(self.data), status=step["status"]))
        if done:
            self._record(step, "confirmed", _("the technician says it took effect"), status=DONE, ended=_now(),
                         message=_("confirmed done by the technician"))
        else:
            self._record(step, "confirmed", _("the technician says it did not take effect: it runs again"),
                         status=PENDING, message="")

    # --- the end ------------------------------------------------------------------

    def finish(self) -> dict:
        """Every step done: move the journal to history and let go of the lock."""
        left = [s["name"] for s in self.data["steps"] if s["status"] != DONE]
        if left:
            raise OnehciError(_("{operation} cannot finish: {steps} not done").format(operation=_describe(self.data),
                                                                                      steps=", ".join(left)))
        self.data["state"] = FINISHED
        self._record(None, FINISHED)
        _to_history(self.directory, self.data)
        self.close()
        return _public(self.data, running=False)

    def status(self) -> dict:
        return _public(self.data, running=self._lock is not None)

    def close(self) -> None:
        """Let go of the lock, leaving an unfinished journal to be continued later."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _to_history(directory: Path, data: dict) -> Path:
    history = state.ensure(directory / "history")
    stamp = re.sub(r"[^0-9T]", "", data["created"].split("+")[0])
    base = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{stamp}-{data['kind']}-{data['target']}")
    path, n = history / f"{base}.json", 1
    while path.exists() and state.read_json(path, None) != data:  # the same record twice is one
        n += 1
        path = history / f"{base}-{n}.json"
    state.write_json(path, data)  # the copy first: a crash between the two leaves both, never neither
    (directory / "current.json").unlink()
    return path


# --- without running it -------------------------------------------------------------


def check_answers(site_path: str | Path, kind: str, target: str, steps: Sequence[Step],
                  answers: dict[str, bool]) -> None:
    """Refuse, before any journal is opened or made, the technician's answers (--took-effect,
    --did-not-take-effect) that cannot apply: no unfinished KIND TARGET, or no such step."""
    if not answers:
        return
    names = [s.name for s in steps]
    unknown = [a for a in answers if a not in names]
    if unknown:
        raise OnehciError(_("{unknown}: not a step of {kind} (its steps: {steps})").format(
            unknown=", ".join(unknown), kind=kind, steps=", ".join(names)))
    found = state.read_json(_dir(site_path) / "current.json", None)
    if found is None or (found["kind"], found["target"]) != (kind, target):
        raise OnehciError(_("there is no unfinished {kind} {target} whose steps to answer for: run it without "
                            "--took-effect/--did-not-take-effect").format(kind=kind, target=target))


def refuse_while_unfinished(site_path: str | Path, doing: str) -> None:
    """Stop DOING (e.g. "lab reinstall lab2") while an operation is unfinished on the site: it
    could take the node away in the middle of that operation's steps."""
    found = current(site_path)
    if found is not None:
        raise OnehciError(_("{doing}: refused, {kind} {target} is unfinished on this site ({state}, at {where}): "
                            "let it finish or run its command again (`{command}`); `onehci operation show` shows it. "
                            "Nothing was changed").format(doing=doing, kind=found["kind"], target=found["target"],
                                                          state=found["state"], where=found["where"],
                                                          command=found["command"]))


def current(site_path: str | Path) -> dict | None:
    """The site's unfinished operation as status() reports it (state `running` when a process
    holds it now), or None."""
    directory = _dir(site_path)
    data = state.read_json(directory / "current.json", None)
    if data is None:
        return None
    lock = state.hold(directory, _LOCK)
    if lock is not None:
        lock.close()
    return _public(data, running=lock is None)


def abandon(site_path: str | Path, reason: str = "") -> dict:
    """Give up the site's unfinished operation: nothing is undone, the journal goes to history
    marked abandoned, and another operation may start. Refused while a process runs it."""
    directory = state.ensure(_dir(site_path))
    lock = state.hold(directory, _LOCK)
    if lock is None:
        found = state.read_json(directory / "current.json", None)
        if found:
            raise OnehciError(_("{operation} is running now: stop it (Ctrl-C) before abandoning it").format(
                operation=_describe(found)))
        raise OnehciError(_("an operation is running now: stop it (Ctrl-C) before abandoning it"))
    try:
        data = state.read_json(directory / "current.json", None)
        if data is None:
            raise OnehciError(_("no operation is unfinished on this site: there is nothing to abandon"))
        data["state"] = ABANDONED
        data["updated"] = _now()
        data["events"].append({"at": data["updated"], "step": None, "event": ABANDONED,
                               "message": reason or _("at {where}").format(where=_where(data))})
        _to_history(directory, data)
    finally:
        lock.close()
    return _public(data, running=False)
