"""`onehci smoke`: a VM really runs on the deployed cloud, its disk on MooseFS.

    image      the guest (installer/testimage.py) copied to the frontend and registered in the
               site's images datastore as `onehci-smoke` (an existing one is reused)
    template   `onehci-smoke`: the image, the site's VM network, a context CD (reused likewise)
    start      one VM per KVM host (or --count N, spread over the hosts), each placed on its host,
               its serial console logged by libvirt on that host
    running    each VM RUNNING in OpenNebula (a VM that fails is named with its host and
               OpenNebula's own error)
    guest up   each guest says on its serial console that it set the address OpenNebula gave it,
               and that it wrote its data disk (a volatile disk on the system datastore, so on
               MooseFS) and read back, past its own cache, what it wrote
    migrate    one VM live-migrated to another host: RUNNING there, and its guest still beating
               (its heartbeat lines appear in the new host's log) and reading its disk back whole
    cleanup    the VMs terminated; the image and template removed when this run made them
               (--keep leaves everything)

Each step is said with its time; the result says which passed."""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import pyone
import requests

from installer import one, remote, testimage
from installer.errors import OnehciError
from installer.i18n import _, ngettext
from installer.plan import make_plan
from installer.waiting import Pending, wait_until

Say = Callable[[str], None]
NAME = "onehci-smoke"
LOG_DIR = "/var/log/libvirt/qemu"  # virtlogd's, on each host
IMAGE_READY, IMAGE_ERROR = 1, 5
VM_DONE = 6
# one.vm.recover's "delete": a VM in a transient state (PROLOG after a step timed out) refuses terminate
RECOVER_DELETE = 3
DISK_MB = 8  # the guest's data disk; the guest finds it by this size (smoke/init)
# seconds per API call once the frontend answered (within onehci's usual 10 s): oned answers an image
# allocation only after its datastore driver has looked at the file, 58 s on the three emulated nodes of
# the Vagrant rehearsal
API_TIMEOUT = 120.0


@dataclass
class Guest:
    vm: int
    name: str
    host: str
    ip: str = ""
    up_seconds: float | None = None


@dataclass
class Result:
    ok: bool = False
    steps: list[dict] = field(default_factory=list)
    guests: list[Guest] = field(default_factory=list)
    migrated: dict | None = None
    error: str | None = None
    kept: bool = False

    def as_dict(self) -> dict:
        return {**asdict(self), "guests": [asdict(g) for g in self.guests]}


def serial_device(name: str) -> str:
    """libvirt XML for a serial console whose output virtlogd keeps in LOG_DIR/NAME.serial."""
    return (f"<devices><serial type='pty'><log file='{LOG_DIR}/{name}.serial' append='off'/>"
            "<target port='0'/></serial></devices>")


def guest_line(log: str, word: str) -> str | None:
    """The last `onehci-smoke: WORD ...` line of a serial log."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip().startswith(f"onehci-smoke: {word}")]
    return lines[-1] if lines else None


def beats(log: str) -> int:
    """The highest heartbeat number in a serial log (0: none)."""
    numbers = [int(ln.split()[2]) for ln in log.splitlines()
               if ln.startswith("onehci-smoke: alive ") and len(ln.split()) > 2 and ln.split()[2].isdigit()]
    return max(numbers, default=0)


def disk_rounds(log: str) -> tuple[int, list[str]]:
    """The last round in which the guest read its whole disk back unchanged, and its BAD lines."""
    rounds = [int(ln.split()[2]) for ln in log.splitlines()
              if ln.startswith("onehci-smoke: disk ") and ln.split()[3:4] == ["ok"] and ln.split()[2].isdigit()]
    bad = [ln.strip() for ln in log.splitlines() if ln.startswith("onehci-smoke: disk ") and "BAD" in ln]
    return max(rounds, default=0), bad


def vm_failure(info) -> str | None:
    """OpenNebula's word on a VM that will not run, or None while it may still come up."""
    lcm = pyone.LCM_STATE(info.LCM_STATE).name if info.STATE == pyone.VM_STATE.ACTIVE else ""
    if info.STATE == pyone.VM_STATE.FAILED or "FAILURE" in lcm:
        return (info.USER_TEMPLATE.get("ERROR") or lcm or "FAILED").strip()
    return None


class Smoke:
    def __init__(self, loaded, *, say: Say, count: int | None, keep: bool, timeout: float):
        self.loaded, self.say, self.keep, self.timeout = loaded, say, keep, timeout
        self.plan = make_plan(loaded.site)
        self.hosts = list(self.plan.opennebula.hosts)
        if not self.hosts:
            raise OnehciError(_("the site has no KVM host (no node with the kvm role): there is nowhere to run a VM"))
        self.count = count or len(self.hosts)
        self.client = one.client_for(loaded, self.plan, calls_timeout=API_TIMEOUT)
        self.names = one.object_names(self.plan.cluster)
        self.made: dict[str, int] = {}  # what this run created: image, template
        self.result = Result(kept=keep)
        self.token = f"{int(time.time()) % 100000:05d}"

    # --- the steps ------------------------------------------------------------------------

    def check_hosts(self) -> str:
        with one.api_errors():
            pool = {h.NAME: h for h in self.client.hostpool.info().HOST}
        bad = [_("{host} (not registered)").format(host=h) if h not in pool else
               f"{h} ({one.STATE_NAMES.get(pool[h].STATE, pool[h].STATE)}"
               + (f": {one.error_line(pool[h])}" if pool[h].STATE == one.ERROR else "") + ")"
               for h in self.hosts if h not in pool or pool[h].STATE != one.MONITORED]
        if bad:
            raise OnehciError(_("KVM hosts not monitored: {hosts}; `onehci status` shows why").format(hosts=", ".join(bad)))
        self.host_ids = {h: pool[h].ID for h in self.hosts}
        return ngettext("{count} KVM host(s) monitored", "{count} KVM host(s) monitored",
                        len(self.hosts)).format(count=len(self.hosts))

    def image(self) -> str:
        with one.api_errors():
            found = {i.NAME: i for i in self.client.imagepool.info(-2, -1, -1).IMAGE}
        if NAME in found and found[NAME].STATE == IMAGE_READY:
            self.image_id = found[NAME].ID
            return _("image {name} (id {id}) already registered").format(name=NAME, id=self.image_id)
        if NAME in found:
            raise OnehciError(_("image {name} (id {id}) exists but is not READY: remove it "
                                "(`oneimage delete {id}`) and run smoke again").format(name=NAME, id=found[NAME].ID))
        local = testimage.ensure(say=self.say)
        frontend = self.plan.node(self.plan.opennebula.frontend)
        target = f"/var/tmp/{NAME}-{local.parent.name}.img"
        remote.put(self.loaded, frontend.ip, local, target, what=_("copying the guest image to the frontend"))
        with one.api_errors():
            stores = {d.NAME: d.ID for d in self.client.datastorepool.info().DATASTORE}
            if self.names["images"] not in stores:
                raise OnehciError(_("no datastore {name}: deploy the site first (onehci deploy)")
                                  .format(name=self.names["images"]))
        with one.api_errors():
            try:
                self.image_id = self.client.image.allocate(one.template({
                    "NAME": NAME, "PATH": target, "TYPE": "OS", "FORMAT": "raw",
                    "DESCRIPTION": "onehci smoke test guest (busybox)"}), stores[self.names["images"]])
            except requests.exceptions.Timeout:
                self._adopt_image()  # only the answer timed out: oned may make the image all the same
                raise
        self.made["image"] = self.image_id

        def ready():
            info = self.client.image.info(self.image_id)
            if info.STATE == IMAGE_ERROR:
                raise OnehciError(_("image {name} went to ERROR: {error}").format(
                    name=NAME, error=info.TEMPLATE.get("ERROR", _("no reason given"))))
            return info.STATE == IMAGE_READY or Pending(_("image state {state}").format(state=info.STATE))

        wait_until(ready, timeout=self.timeout, every=2, timed_out=lambda left: (
            _("image {name} not READY after {seconds} s ({left}): is the images datastore full or "
              "unreachable? `oneimage show` on the frontend").format(name=NAME, seconds=f"{self.timeout:.0f}",
                                                                     left=left)))
        return _("image {name} (id {id}) registered, {size} MiB").format(
            name=NAME, id=self.image_id, size=f"{local.stat().st_size / 2**20:.0f}")

    def template(self) -> str:
        text = one.template({"NAME": NAME, "CPU": "0.1", "VCPU": "1", "MEMORY": "128",
                             "DISK": [{"IMAGE_ID": self.image_id}, {"TYPE": "fs", "SIZE": DISK_MB, "FORMAT": "raw"}],
                             "NIC": {"NETWORK": self.names["network"]},
                             "CONTEXT": {"NETWORK": "YES", "ONEHCI_DISK_MB": DISK_MB}})
        with one.api_errors():
            found = {t.NAME: t.ID for t in self.client.templatepool.info(-2, -1, -1).VMTEMPLATE}
            if NAME in found:  # kept by an earlier run (--keep): made the same as this run would
                self.template_id = found[NAME]
                self.client.template.update(self.template_id, text, 0)
                return _("template {name} (id {id}) already registered").format(name=NAME, id=self.template_id)
            self.template_id = self.client.template.allocate(text)
        self.made["template"] = self.template_id
        return _("template {name} (id {id}) registered").format(name=NAME, id=self.template_id)

    def start(self) -> str:
        for n in range(self.count):
            host = self.hosts[n % len(self.hosts)]
            name = f"{NAME}-{self.token}-{n + 1}"
            extra = f'RAW = [ TYPE = "kvm", DATA = "{serial_device(name)}" ]\n'
            with one.api_errors():
                vm = self.client.template.instantiate(self.template_id, name, True, extra, False)
                self.result.guests.append(Guest(vm=vm, name=name, host=host))
                self.client.vm.deploy(vm, self.host_ids[host], False, -1)
        return ", ".join(_("{name} (VM {vm}) on {host}").format(name=g.name, vm=g.vm, host=g.host)
                         for g in self.result.guests)

    def running(self) -> str:
        def all_running():
            waiting = []
            for g in self.result.guests:
                info = self.client.vm.info(g.vm)
                failure = vm_failure(info)
                if failure:
                    raise OnehciError(_("VM {vm} on {host} failed: {error}").format(vm=g.vm, host=g.host, error=failure))
                if (info.STATE, info.LCM_STATE) != (pyone.VM_STATE.ACTIVE, pyone.LCM_STATE.RUNNING):
                    waiting.append(f"VM {g.vm} {pyone.VM_STATE(info.STATE).name}")
                else:
                    nic = info.TEMPLATE.get("NIC")
                    g.ip = (nic[0] if isinstance(nic, list) else nic or {}).get("IP", "")
            return not waiting or Pending(", ".join(waiting))

        wait_until(all_running, timeout=self.timeout, every=2, timed_out=lambda left: (
            _("not RUNNING after {seconds} s: {left}; `onevm show ID` says why").format(
                seconds=f"{self.timeout:.0f}", left=left)))
        return ", ".join(f"VM {g.vm} {g.ip}" for g in self.result.guests)

    def log(self, guest: Guest, host: str) -> str:
        node = self.plan.node(host)
        return remote.run(self.loaded, node.ip, f"cat {shlex.quote(f'{LOG_DIR}/{guest.name}.serial')} 2>/dev/null",
                          timeout=30).stdout

    def guests_up(self) -> str:
        started = time.monotonic()

        def all_up():
            waiting = []
            for g in self.result.guests:
                if g.up_seconds is not None:
                    continue
                log = self.log(g, g.host)
                line = guest_line(log, "up") or guest_line(log, "cannot") or ""
                read_back, bad = disk_rounds(log)
                if line and not line.startswith(f"onehci-smoke: up {g.ip}/"):
                    raise OnehciError(_("VM {vm} on {host}: the guest says {said}, expected address {ip}").format(
                        vm=g.vm, host=g.host, said=repr(line), ip=g.ip))
                if bad:
                    raise OnehciError(_("VM {vm} on {host}: the guest says {said}").format(vm=g.vm, host=g.host,
                                                                                          said=repr(bad[0])))
                if line and read_back:
                    g.up_seconds = round(time.monotonic() - started, 1)
                else:
                    waiting.append((_("VM {vm} on {host} wrote no disk round") if line else
                                    _("VM {vm} on {host} said nothing")).format(vm=g.vm, host=g.host))
            return not waiting or Pending(", ".join(waiting))

        wait_until(all_up, timeout=self.timeout, every=2, timed_out=lambda left: (
            _("guests not up after {seconds} s: {left}; each one's serial log is {log_dir}/VM-NAME.serial "
              "on its host (a guest that never booted, could not read its context CD, or cannot write its disk)")
            .format(seconds=f"{self.timeout:.0f}", left=left, log_dir=LOG_DIR)))
        return ", ".join(_("VM {vm} up at {ip}, its disk read back").format(vm=g.vm, ip=g.ip)
                         for g in self.result.guests)

    def migrate(self) -> str:
        if len(self.hosts) < 2:
            self.result.migrated = {"skipped": _("one KVM host: nowhere to migrate to")}
            return _("skipped: one KVM host")
        guest = self.result.guests[0]
        target = next(h for h in self.hosts if h != guest.host)
        before = beats(self.log(guest, guest.host))
        started = time.monotonic()
        with one.api_errors():
            self.client.vm.migrate(guest.vm, self.host_ids[target], True, False, -1, 0)

        def moved():
            info = self.client.vm.info(guest.vm)
            failure = vm_failure(info)
            if failure:
                raise OnehciError(_("VM {vm}'s live migration from {source} to {target} failed: {error}").format(
                    vm=guest.vm, source=guest.host, target=target, error=failure))
            history = info.HISTORY_RECORDS.HISTORY
            now = (history[-1] if isinstance(history, list) else history).HOSTNAME
            running = (info.STATE, info.LCM_STATE) == (pyone.VM_STATE.ACTIVE, pyone.LCM_STATE.RUNNING)
            return (running and now == target) or Pending(_("{state} on {host}").format(
                state=pyone.LCM_STATE(info.LCM_STATE).name, host=now))

        wait_until(moved, timeout=self.timeout, every=2, timed_out=lambda left: (
            _("VM {vm} not RUNNING on {target} {seconds} s after its live migration ({left})").format(
                vm=guest.vm, target=target, seconds=f"{self.timeout:.0f}", left=left)))
        # OpenNebula may show the VM RUNNING on its new host before the move is over: the guest's own
        # heartbeat in the new host's log is what says it runs there
        wait_until(lambda: beats(self.log(guest, target)) > 0 or Pending("no heartbeat yet"), timeout=60, every=1,
                   timed_out=lambda _left: _("VM {vm} runs on {target} but its guest is silent there").format(
                       vm=guest.vm, target=target))
        seconds = round(time.monotonic() - started, 1)

        def reading():  # a whole disk round done on the new host: its disk came along unchanged
            read_back, bad = disk_rounds(self.log(guest, target))
            if bad:
                raise OnehciError(_("VM {vm} after its move to {target}: the guest says {said}").format(
                    vm=guest.vm, target=target, said=repr(bad[0])))
            return read_back > 0 or Pending("no disk round yet")

        wait_until(reading, timeout=60, every=1, timed_out=lambda _left: (
            _("VM {vm} beats on {target} but has not read its disk back there in 60 s").format(vm=guest.vm,
                                                                                               target=target)))
        after = beats(self.log(guest, target))
        self.result.migrated = {"vm": guest.vm, "from": guest.host, "to": target, "seconds": seconds,
                                "beats_before": before, "beats_after": after}
        guest.host = target
        return _("VM {vm} {source} -> {target} in {seconds} s, the guest beating and reading its disk back there").format(
            vm=guest.vm, source=self.result.migrated["from"], target=target, seconds=seconds)

    def _adopt_image(self) -> None:
        """The image whose allocation timed out, if oned makes it (it adds the image to its pool only once
        its driver answered, so it is looked for a while): this run's, as there was none before, so the
        cleanup removes it. Only after a timeout: any other refusal may be about another run's image."""
        def appeared():
            with one.api_errors():
                found = [i.ID for i in self.client.imagepool.info(-2, -1, -1).IMAGE if i.NAME == NAME]
            return found or Pending("no image yet")

        try:
            self.made["image"] = wait_until(appeared, timeout=API_TIMEOUT, every=2, timed_out=str)[0]
        except OnehciError:
            pass  # not made, or the frontend does not answer: the next run names the image if it is there

    def _remove_vm(self, vm: int) -> None:
        try:
            self.client.vm.action("terminate-hard", vm)
        except pyone.OneActionException:  # "wrong state PROLOG": this run's VM all the same
            self.client.vm.recover(vm, RECOVER_DELETE)

    def cleanup(self) -> str:
        """Each piece on its own, so that one OpenNebula refuses does not leave the others behind; what is
        left is named in one error at the end."""
        if self.keep:
            return _("kept (--keep): {vms}").format(vms=", ".join(f"VM {g.vm}" for g in self.result.guests))
        done: list[str] = []
        left: list[str] = []
        asked = []
        for g in self.result.guests:
            if _try(left, _("VM {vm}").format(vm=g.vm), lambda vm=g.vm: self._remove_vm_unless_done(vm)):
                asked.append(g.vm)
        if asked and _try(left, _("VMs {vms}").format(vms=", ".join(map(str, asked))), lambda: wait_until(
                lambda: all(self.client.vm.info(vm).STATE == VM_DONE for vm in asked) or Pending("VMs terminating"),
                timeout=self.timeout, every=2,
                timed_out=lambda _left: _("did not terminate: `onevm list` on the frontend"))):
            done.append(ngettext("{count} VM(s) terminated", "{count} VM(s) terminated", len(asked))
                        .format(count=len(asked)))
        if "template" in self.made:
            template = self.made["template"]
            if _try(left, _("template {id}").format(id=template), lambda: self.client.template.delete(template, False)):
                done.append(_("template {id} removed").format(id=template))
        if "image" in self.made:
            image = self.made["image"]

            def remove_image():
                self.client.image.delete(image)
                wait_until(lambda: image not in {i.ID for i in self.client.imagepool.info(-2, -1, -1).IMAGE}
                           or Pending("image deleting"), timeout=self.timeout, every=1,
                           timed_out=lambda _left: _("still there: `oneimage show {id}`").format(id=image))
            if _try(left, _("image {id}").format(id=image), remove_image):
                done.append(_("image {id} removed").format(id=image))
        if left:
            raise OnehciError(_("left behind: {left} (done: {done})").format(
                left="; ".join(left), done=", ".join(done) or _("nothing")))
        return ", ".join(done)

    def _remove_vm_unless_done(self, vm: int) -> None:
        if self.client.vm.info(vm).STATE != VM_DONE:
            self._remove_vm(vm)


def _try(left: list[str], what: str, action: Callable[[], object]) -> bool:
    """ACTION through OpenNebula's API; False, and WHAT with the error added to LEFT, if it failed."""
    try:
        with one.api_errors():
            action()
    except OnehciError as exc:
        left.append(f"{what}: {exc}")
        return False
    return True


def smoke(loaded, *, count: int | None = None, keep: bool = False, timeout: float = 300,
          say: Say = print) -> dict:
    """Run the smoke test; the result as `--json` prints it (ok false and the error when a step
    failed). Whatever happens, the cleanup runs (unless KEEP)."""
    work = Smoke(loaded, say=say, count=count, keep=keep, timeout=timeout)
    steps = [("hosts", work.check_hosts), ("image", work.image), ("template", work.template),
             ("start", work.start), ("running", work.running), ("guest up", work.guests_up),
             ("migrate", work.migrate)]
    try:
        for name, fn in steps:
            _step(work, name, fn)
        work.result.ok = True
    except OnehciError as exc:
        work.result.error = str(exc)
    finally:
        try:
            _step(work, "cleanup", work.cleanup)
        except OnehciError as exc:
            work.result.ok = False
            work.result.error = work.result.error or str(exc)
    return work.result.as_dict()


def _step(work: Smoke, name: str, fn) -> None:
    started = time.monotonic()
    try:
        detail = fn()
    except OnehciError as exc:
        seconds = round(time.monotonic() - started, 1)
        work.result.steps.append({"name": name, "ok": False, "seconds": seconds, "detail": str(exc)})
        work.say(_("smoke: {step} FAILED after {seconds} s: {error}").format(step=name, seconds=seconds, error=exc))
        raise
    seconds = round(time.monotonic() - started, 1)
    work.result.steps.append({"name": name, "ok": True, "seconds": seconds, "detail": detail})
    work.say(_("smoke: {step} ({seconds} s): {detail}").format(step=name, seconds=seconds, detail=detail))
