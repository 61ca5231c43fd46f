"""`onehci recover-master SITE [--from NODE]`: bring the MooseFS master back, as one journaled
operation (installer/journal.py, kind "recover-master", target the node that is master at the end).

In place (no --from): the master process died (crash, kill -9, power cut) and its host is fine.
moosefs-master.service has Restart=no and a plain start refuses after a crash ("can't find
metadata.mfs - try using option '-a'"), so:

    preflight   the master does not answer, its host does; its data directory holds metadata;
                the metadata version on disk (image header + last changelog entry) is recorded
    restart     DESTRUCTIVE: `mfsmaster -a` (recovery from the changelogs), its clean stop (a full
                metadata.mfs stored), then `systemctl start moosefs-master`: the service runs under
                systemd again, and a later plain start works
    verify      the master answers, its metadata version is not lower than the one on disk,
                no chunk is missing once the chunkservers are back; the site's metaloggers hold
                the master's changes (waited for METALOGGER_WAIT s at most; one still behind is reported)
    healthy     `onehci status` green (free space aside) within the timeout, or exit 1 naming what is not

Promotion (--from NODE, a metalogger node): the master host is lost for good.

    preflight   the old master does not answer (port 9421) and its host does not answer SSH
                (no split brain); NODE answers and holds metalogger data (metadata_ml.mfs.back);
                the version the metalogger holds is recorded; the technician confirms
    site        site.yml: mfs_master moved from the old master to NODE (in place, comments kept;
                otherwise the exact change is printed and the operation stops until it is made):
                from here the roles render the new layout
    install     the master role on NODE, packages and configuration only (playbooks/master-install.yml)
    promote     DESTRUCTIVE: the metalogger stopped, its files copied as master files
                (metadata_ml.mfs.back -> metadata.mfs.back, changelog_ml*.mfs -> changelog.N.mfs),
                the originals kept in /var/lib/mfs/metalogger.before-promotion/, `mfsmaster -a`
                and the hand-over to systemd as above
    repoint     the common role on every node that answers (playbooks/base.yml): `mfsmaster` in
                /etc/hosts names NODE; chunkservers, metaloggers and mounts reconnect by themselves
                (they resolve the name again)
    forget      the chunkservers that do not come back (the lost host's) removed from the master's
                list (`mfscli -CRC`)
    deploy      `onehci deploy` of the nodes that answer (the others left out of the inventory):
                every node follows the new layout
    verify      as above
    healthy     `onehci status` of the nodes that answer green within the timeout, or exit 1; a lost
                node still in site.yml is named, with what to do about it

Day-2 steps change a node's configuration only through the roles (playbooks/README.md).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

from installer import deploy, journal, mfs, remote, sitefile, yamlpos
from installer.errors import OnehciError
from installer.i18n import _
from installer.journal import Step
from installer.operations import install as installing
from installer.waiting import Pending, wait_until
from installer.plan import make_plan

Say = Callable[[str], None]
DATA = "/var/lib/mfs"
KEPT = "metalogger.before-promotion"  # where the metalogger's own files go, in DATA
# How long verify waits for the metaloggers to hold the recovered master's changes: they try to
# reconnect every 5 s (MASTER_RECONNECTION_DELAY), then write what they receive every second.
METALOGGER_WAIT = 30

IN_PLACE = [
    Step("preflight"),
    Step("restart", destructive=True, verify=lambda: _("whether moosefs-master runs on the master node "
                                                        "(`systemctl status moosefs-master`, `mfscli -SIM`)")),
    Step("verify"), Step("healthy"),
]
PROMOTION = [
    Step("preflight"), Step("site"), Step("install"),
    Step("promote", destructive=True, verify=lambda: _(
        "whether moosefs-master runs on the new master node and {kept}/ holds the metalogger's files "
        "(`systemctl status moosefs-master`)").format(kept=f"{DATA}/{KEPT}")),
    Step("repoint"), Step("forget"), Step("deploy"), Step("verify"), Step("healthy"),
]


class Declined(OnehciError):
    """The technician did not confirm the promotion: nothing was changed."""


# --- pure parts (tests/unit/operations/test_recover_master.py) ---------------------------------------


def image_version(header_hex: str) -> int | None:
    """The metadata version in a metadata image's first 16 bytes (hex): `MFSM 2.0` then the
    version as a big-endian 64-bit number. A brand-new `MFSM NEW` image is version 0; None for
    anything else."""
    raw = bytes.fromhex(header_hex.strip())
    if raw[:8] == b"MFSM NEW":
        return 0
    if raw[:5] == b"MFSM " and len(raw) >= 16:
        return int.from_bytes(raw[8:16], "big")
    return None


_FILE_LINE = re.compile(r"^(image|log) (\S+) ?(.*)$")


def disk_version(listing: str) -> tuple[int, dict]:
    """From `_inspect`'s output (`image NAME HEX` and `log NAME LAST_ENTRY` lines): the version
    the metadata on disk reaches (the next change's number: the highest of the images' versions
    and the last changelog entry + 1), and what it was read from."""
    best, found = 0, {}
    for line in listing.splitlines():
        m = _FILE_LINE.match(line.strip())
        if not m:
            continue
        kind, name, value = m.groups()
        if kind == "image":
            version = image_version(value) if value else None
        else:
            version = int(value) + 1 if value.isdigit() else None
        if version is not None:
            found[name] = version
            best = max(best, version)
    return best, found


def master_version(sim: str) -> int | None:
    """The metadata version from `mfscli -SIM` (plain, `|`-separated): the 5th field of the
    `metadata servers` row. (Debian's mfscli 3.0.117 shows no version in -SIG.)"""
    for row in mfs.rows(sim):
        if len(row) >= 5 and row[4].isdigit():
            return int(row[4])
    return None


def disconnected(cs: str) -> list[tuple[str, int]]:
    """The `Disconnected chunk servers` rows of `mfscli -SCS`: (ip, port)."""
    out = []
    for line in cs.splitlines():
        if line.startswith("Disconnected chunk servers") and mfs.SEP in line:
            row = line.split(mfs.SEP)[1:]
            if len(row) >= 2 and row[1].isdigit():
                out.append((row[0], int(row[1])))
    return out


def promotion_copies(names: list[str]) -> list[tuple[str, str]]:
    """(source, destination) in the data directory: the metalogger's image and changelogs as the
    master's own. changelog_ml.N.mfs keeps its number; changelog_ml_back.N.mfs (the changes the
    metalogger fetched when it connected, older than its image or overlapping it) follow after the
    highest N. `mfsmaster -a` merges the changelogs by entry number, skipping what the image has."""
    if "metadata_ml.mfs.back" not in names:
        return []
    copies = [("metadata_ml.mfs.back", "metadata.mfs.back")]
    logs = sorted((int(m.group(1)), n) for n in names if (m := re.fullmatch(r"changelog_ml\.(\d+)\.mfs", n)))
    backs = sorted((int(m.group(1)), n) for n in names if (m := re.fullmatch(r"changelog_ml_back\.(\d+)\.mfs", n)))
    copies += [(n, f"changelog.{i}.mfs") for i, n in logs]
    first = (logs[-1][0] + 1) if logs else 0
    copies += [(n, f"changelog.{first + i}.mfs") for i, n in backs]
    return copies


def move_role_text(text: str, role: str, old: str, new: str) -> str:
    """SITE text with ROLE taken from node OLD's `roles` and given to node NEW's, everything else
    byte for byte. Flow lists on one line (`roles: [a, b]`) are rewritten in place; block lists
    lose or gain one `- role` line. Raises OnehciError when the file is written otherwise."""
    parsed = yamlpos.parse(text)
    lines = text.splitlines(keepends=True)
    index = {n.get("hostname"): i for i, n in enumerate(parsed.data.get("nodes") or []) if isinstance(n, dict)}
    for name in (old, new):
        if name not in index:
            raise OnehciError(_("{node} is not a node of the site").format(node=name))
    edits: dict[int, str] = {}  # 0-based line -> its new text ("" drops the line)
    for name, add in ((old, False), (new, True)):
        i = index[name]
        seq = parsed.nodes.get(("nodes", i, "roles"))
        roles = parsed.data["nodes"][i].get("roles") or []
        if seq is None or not isinstance(roles, list):
            raise OnehciError(_("node {node} has no roles list").format(node=name))
        if (role in roles) == add:
            continue
        wanted = [r for r in roles if r != role] + ([role] if add else [])
        if seq.flow_style:
            row = seq.start_mark.line
            if seq.end_mark.line != row or row in edits:
                raise OnehciError(_("the roles of {node} span several lines").format(node=name))
            line = lines[row]
            edits[row] = line[:seq.start_mark.column] + "[" + ", ".join(wanted) + "]" + line[seq.end_mark.column:]
        elif add:
            last = seq.value[-1]
            row = last.start_mark.line
            indent = lines[row][:lines[row].index("-")]
            edits[row] = lines[row] + ("" if lines[row].endswith("\n") else "\n") + f"{indent}- {role}\n"
        else:
            item = next(v for v in seq.value if v.value == role)
            row = item.start_mark.line
            if len(seq.value) == 1 or lines[row].strip().split("#")[0].strip() != f"- {role}":
                raise OnehciError(_("the roles of {node} are written in a way onehci does not edit").format(node=name))
            edits[row] = ""
    return "".join(edits.get(i, line) for i, line in enumerate(lines))


def site_change(path: str, role: str, old: str, new: str, lines: dict[str, int]) -> str:
    """The change to make by hand, in words."""
    return _("in {path}, remove {role} from the roles of {old} (line {old_line}) and add it to the roles "
             "of {new} (line {new_line})").format(path=path, role=role, old=old, old_line=lines.get(old, "?"), new=new,
                                                  new_line=lines.get(new, "?"))


# --- on the nodes ---------------------------------------------------------------------


def _inspect_script(patterns: str) -> str:
    return (f"cd {DATA} 2>/dev/null || exit 0; for f in {patterns}; do [ -f \"$f\" ] || continue; case $f in "
            "metadata*) printf 'image %s %s\\n' \"$f\" \"$(head -c 16 \"$f\" | od -An -tx1 | tr -d ' \\n')\";; "
            "changelog*) printf 'log %s %s\\n' \"$f\" \"$(grep -a -o '^[0-9]*:' \"$f\" | tail -n 1 | tr -d :)\";; "
            "esac; done")


MASTER_FILES = "metadata.mfs metadata.mfs.back changelog.*.mfs"
LOGGER_FILES = "metadata_ml.mfs.back changelog_ml.*.mfs changelog_ml_back.*.mfs"

# `mfsmaster -a` recovers (last image + changelogs) and runs as a daemon; its clean stop stores a
# full metadata.mfs, which a plain start accepts: systemd then runs the master as usual. (A runtime
# drop-in adding -a to the unit needs two `systemctl daemon-reload`s, which took 90 s each in lab
# containers on a busy machine.) Enabling is the unit's symlink, for the same reason.
HAND_OVER = f"""set -e
/usr/sbin/mfsmaster -c /etc/mfs/mfsmaster.cfg stop
test -s {DATA}/metadata.mfs
systemctl start moosefs-master.service
wants=/etc/systemd/system/multi-user.target.wants
[ -e $wants/moosefs-master.service ] || {{ mkdir -p $wants && ln -s /lib/systemd/system/moosefs-master.service $wants/; }}
"""
START_WITH_RECOVERY = """set -e
systemctl reset-failed moosefs-master.service 2>/dev/null || true
/usr/sbin/mfsmaster -c /etc/mfs/mfsmaster.cfg -a start
""" + HAND_OVER.removeprefix("set -e\n")


class Recovery:
    """The steps' work; each method returns what the journal records."""

    def __init__(self, loaded, source: str | None, *, say: Say, confirm: Callable[[dict], bool],
                 timeout: float = 300, healthy_timeout: float = 600):
        self.loaded, self.source, self.say, self.confirm, self.timeout = loaded, source, say, confirm, timeout
        self.healthy_timeout = healthy_timeout
        self.plan = make_plan(loaded.site)
        self.old = self.plan.node(self.plan.moosefs.master)
        self.new = self.plan.node(source) if source else self.old

    def resume(self, facts: dict) -> None:
        """Continue after the preflight: the old master is the one it found (the site step may have
        moved the role in site.yml since)."""
        if self.source and facts.get("old"):
            self.old = self.plan.node(facts["old"])

    def sh(self, node, script: str, what: str, timeout: float = 120) -> str:
        return remote.check(self.loaded, node.ip, script, _("{what} on {node}").format(what=what, node=node.hostname),
                            timeout=timeout)

    def master_answers(self, ip: str) -> bool:
        return mfs.health(ip, timeout=5).reachable

    def version_now(self, ip: str) -> int | None:
        try:
            return master_version(mfs.mfscli(ip, "IM", timeout=10))
        except (OnehciError, subprocess.TimeoutExpired):
            return None

    def wait_master(self, ip: str, node) -> None:
        def timed_out(_pending: str) -> str:
            log = remote.run(self.loaded, node.ip, "systemctl is-active moosefs-master; journalctl -u "
                             "moosefs-master --no-pager -n 5 -o cat", timeout=30).stdout.strip().splitlines()
            return _("the MooseFS master on {node} does not answer {seconds} s after its start ({log}); see "
                     "`journalctl -u moosefs-master` there, then run the same command again").format(
                node=node.hostname, seconds=f"{self.timeout:.0f}", log=" / ".join(log[-3:]) or _("no log"))

        wait_until(lambda: self.master_answers(ip), timeout=self.timeout, every=2, timed_out=timed_out)

    # --- in place ---------------------------------------------------------------

    def preflight_in_place(self) -> dict:
        node = self.old
        if self.master_answers(node.ip):
            version = self.version_now(node.ip)
            self.say(_("the MooseFS master on {node} answers (metadata version {version}): nothing to recover")
                     .format(node=node.hostname, version=version))
            return {"running": True, "before": version}
        if not remote.alive(self.loaded, node.ip):
            raise OnehciError(_("the MooseFS master {node} ({ip}) does not answer, and neither does its "
                                "host over SSH: if it is lost, promote a metalogger with `onehci recover-master SITE "
                                "--from NODE`; if it is only down, power it on and run this again").format(
                node=node.hostname, ip=node.ip))
        listing = self.sh(node, _inspect_script(MASTER_FILES), _("reading the master's data directory"))
        before, files = disk_version(listing)
        if not files:
            raise OnehciError(_("{node} holds no MooseFS metadata in {data} (no metadata.mfs* nor changelog): "
                                "nothing to recover there; promote a metalogger with `onehci recover-master SITE "
                                "--from NODE`").format(node=node.hostname, data=DATA))
        self.say(_("{node}: the master is down; its metadata on disk reaches version {version} ({files})").format(
            node=node.hostname, version=before, files=", ".join(sorted(files))))
        return {"running": False, "before": before, "files": files}

    def restart(self) -> dict:
        self.say(_("{node}: starting moosefs-master with `mfsmaster -a` (recovery from its changelogs)")
                 .format(node=self.old.hostname))
        self.sh(self.old, START_WITH_RECOVERY, _("starting moosefs-master with -a"), timeout=self.timeout)
        self.wait_master(self.old.ip, self.old)
        return {"started": True}

    # --- promotion --------------------------------------------------------------

    def preflight_promotion(self) -> dict:
        old, new = self.old, self.new
        if new is None:
            raise OnehciError(_("--from {node}: not a node of the site (its nodes: {nodes})").format(
                node=self.source, nodes=", ".join(n.hostname for n in self.plan.nodes)))
        if new.hostname == old.hostname:
            raise OnehciError(_("{node} is already the master in the site: recover it in place with "
                                "`onehci recover-master SITE` (without --from)").format(node=new.hostname))
        if self.master_answers(old.ip):
            raise OnehciError(_("the MooseFS master {old} ({ip}) still answers: promoting {new} "
                                "now would make two masters (split brain); nothing was changed").format(
                old=old.hostname, ip=old.ip, new=new.hostname))
        if remote.alive(self.loaded, old.ip, timeout=10):
            raise OnehciError(_("the host of the master, {old} ({ip}), still answers over SSH: recover the "
                                "master there with `onehci recover-master SITE` (without --from); to promote anyway, "
                                "power {old} off first (a master started there again would split the "
                                "filesystem). Nothing was changed").format(old=old.hostname, ip=old.ip))
        if not remote.alive(self.loaded, new.ip):
            raise OnehciError(_("{node} ({ip}) does not answer over SSH; nothing was changed").format(node=new.hostname,
                                                                                                     ip=new.ip))
        listing = self.sh(new, _inspect_script(LOGGER_FILES), _("reading the metalogger's data directory"))
        before, files = disk_version(listing)
        if "metadata_ml.mfs.back" not in files:
            if new.has("mfs_metalogger"):
                text = _("{node} has no metalogger data in {data} (no metadata_ml.mfs.back): it cannot become the "
                         "master; choose a node that ran a metalogger. Nothing was changed")
            else:
                text = _("{node} has no metalogger data in {data} (no metadata_ml.mfs.back; it is no mfs_metalogger "
                         "in the site): it cannot become the master; choose a node that ran a metalogger. Nothing "
                         "was changed")
            raise OnehciError(text.format(node=new.hostname, data=DATA))
        facts = {"old": old.hostname, "new": new.hostname, "before": before, "files": files}
        self.say(_("{node}: the metalogger's copy reaches metadata version {version} ({files})").format(
            node=new.hostname, version=before, files=", ".join(sorted(files))))
        if not self.confirm(facts):
            raise Declined(_("not confirmed: {node} was not promoted; nothing was changed").format(node=new.hostname))
        return facts

    def install(self) -> str:
        """The master role on the new node, packages and configuration only: nothing started (the
        metalogger's files are not in place yet)."""
        self.say(_("{node}: the master role installs and configures moosefs-master (not started)")
                 .format(node=self.new.hostname))
        deploy.apply(self.loaded, "master-install.yml", [self.new.hostname], say=self.say)
        return _("moosefs-master installed and configured by the master role")

    def promote(self) -> dict:
        new = self.new
        names = self.sh(new, f"ls -1 {DATA}", _("listing the data directory")).split()
        copies = promotion_copies(names)
        if not copies:
            if "metadata.mfs.back" in names and KEPT in names:  # copied by an earlier run
                self.say(_("{node}: the metalogger's files were copied already").format(node=new.hostname))
            else:
                raise OnehciError(_("{node}: no metadata_ml.mfs.back in {data} any more").format(node=new.hostname,
                                                                                                data=DATA))
        clash = [dst for _source, dst in copies if dst in names]
        if clash:
            raise OnehciError(_("{node}: {data} already holds master files ({files}): onehci will not "
                                "overwrite them; look at them (an earlier master there?) and move them away by hand")
                              .format(node=new.hostname, data=DATA, files=", ".join(clash)))
        ml = " ".join(shlex.quote(n) for n in names if "_ml" in n)
        script = ("set -e\nsystemctl stop moosefs-metalogger.service 2>/dev/null || true\n"
                  + f"cd {DATA}\n"
                  + "".join(f"cp -p {shlex.quote(s)} {shlex.quote(d)}\n" for s, d in copies)
                  + (f"mkdir -p {KEPT}\nmv -f {ml} {KEPT}/\n" if ml else "")
                  + f"chown mfs:mfs {DATA}/metadata.mfs.back {DATA}/changelog.*.mfs 2>/dev/null || true\n")
        self.say(_("{node}: the metalogger's files become the master's ({copies}); originals in {kept}/").format(
            node=new.hostname, copies=", ".join(f"{s} -> {d}" for s, d in copies) or _("done before"),
            kept=f"{DATA}/{KEPT}"))
        self.sh(new, script, _("copying the metalogger's files"))
        self.say(_("{node}: starting moosefs-master with `mfsmaster -a`").format(node=new.hostname))
        self.sh(new, START_WITH_RECOVERY, _("starting moosefs-master with -a"), timeout=self.timeout)
        self.wait_master(new.ip, new)
        return {"copies": copies}

    def promoted(self) -> bool:
        """The check of an interrupted promote: the master on the new node answers, under systemd."""
        return self.running_under_systemd(self.new)

    def running_under_systemd(self, node) -> bool:
        """The check of an interrupted restart or promote: the master on NODE answers. When it
        answers but runs outside systemd (interrupted between `mfsmaster -a` and the hand-over),
        the hand-over is finished here: a clean stop stores metadata.mfs, then systemd starts it."""
        if not self.master_answers(node.ip):
            return False
        if remote.run(self.loaded, node.ip, "systemctl is-active --quiet moosefs-master", timeout=30).returncode == 0:
            return True
        self.say(_("the master on {node} answers outside systemd: handing it over (clean stop, then "
                   "systemctl start)").format(node=node.hostname))
        self.sh(node, HAND_OVER, _("handing the master to systemd"), timeout=self.timeout)
        self.wait_master(node.ip, node)
        return True

    def answering(self) -> list:
        nodes = [n for n in self.plan.nodes if n.hostname != self.old.hostname or self.new is self.old]
        return [n for n in nodes if remote.alive(self.loaded, n.ip, timeout=10)]

    def repoint(self) -> dict:
        """The common role on every node that answers: /etc/hosts's `mfsmaster` follows the site,
        which names the new master since the site step."""
        nodes = self.answering()
        done = [n.hostname for n in nodes]
        skipped = [n.hostname for n in self.plan.nodes if n.hostname not in done]
        deploy.apply(self.loaded, "base.yml", done, say=self.say)
        if skipped:
            text = _("`mfsmaster` now names {master} ({ip}) on {nodes}; not on {skipped} (no answer)")
        else:
            text = _("`mfsmaster` now names {master} ({ip}) on {nodes}")
        self.say(text.format(master=self.new.hostname, ip=self.new.ip, nodes=", ".join(done),
                             skipped=", ".join(skipped)))
        return {"repointed": done, "not": skipped}

    def forget(self) -> dict:
        """Wait for the chunkservers that answer to reconnect, then drop the rest from the list."""
        ip = self.new.ip
        alive = {n.ip for n in self.plan.nodes if n.has("mfs_chunkserver") and n.hostname != self.old.hostname
                 and remote.alive(self.loaded, n.ip, timeout=10)}
        def reconnected():
            connected = {c.ip for c in mfs.health(ip).chunkservers}
            return alive <= connected or Pending(", ".join(sorted(alive - connected)))

        wait_until(reconnected, timeout=self.timeout, every=2, timed_out=lambda left: (
            _("chunkservers {left} did not reconnect to the new master within {seconds} s; check `mfsmaster` "
              "in their /etc/hosts").format(left=left, seconds=f"{self.timeout:.0f}")))
        removed = []
        for cs_ip, port in disconnected(mfs.mfscli(ip, "CS")):
            subprocess.run(["mfscli", "-H", ip, f"-CRC/{cs_ip}/{port}"], capture_output=True, text=True, timeout=20)
            removed.append(f"{cs_ip}:{port}")
        if removed:
            self.say(_("removed the chunkservers that are gone from the master's list: {chunkservers}")
                     .format(chunkservers=", ".join(removed)))
        return {"removed": removed}

    def site(self) -> dict:
        path = Path(self.loaded.path)
        current = sitefile.load(path)
        master = make_plan(current.site).moosefs.master
        if master == self.new.hostname:
            self.loaded = current
            return {"changed": False}
        text = path.read_text(encoding="utf-8")
        try:
            new_text = move_role_text(text, "mfs_master", self.old.hostname, self.new.hostname)
        except OnehciError as exc:
            parsed = yamlpos.parse(text)
            lines = {n.get("hostname"): parsed.lines.get(("nodes", i, "roles"))
                     for i, n in enumerate(parsed.data.get("nodes") or []) if isinstance(n, dict)}
            raise OnehciError(_("site.yml was not changed ({reason}): make this change by hand, then run the same "
                                "command again: {change}").format(
                reason=exc, change=site_change(str(path), "mfs_master", self.old.hostname, self.new.hostname, lines))
                              ) from None
        _replace(path, new_text)
        self.loaded = sitefile.load(path)
        self.say(_("{path}: mfs_master moved from {old} to {new}").format(path=path, old=self.old.hostname,
                                                                          new=self.new.hostname))
        return {"changed": True}

    def reachable(self) -> tuple[object, list[str]]:
        """The site as far as it answers: the nodes that do not answer left out (and named), each
        remaining node keeping the address the whole site's plan gives it (without the lost node,
        the addresses the plan allocates to nodes without `ip:` would shift)."""
        self.loaded = sitefile.load(self.loaded.path)
        limit = [n.hostname for n in self.answering()]
        lost = [n.hostname for n in self.loaded.site.nodes if n.hostname not in limit]
        full = make_plan(self.loaded.site)
        kept = dataclasses.replace(self.loaded, site=self.loaded.site.model_copy(update={"nodes": [
            n.model_copy(update={"ip": ipaddress.IPv4Address(full.node(n.hostname).ip)})
            for n in self.loaded.site.nodes if n.hostname in limit]}))
        return kept, lost

    def deploy(self) -> dict:
        # the nodes that do not answer are left out of the inventory, not just of --limit: the
        # roles that gather from every host of a group (oneadmin's SSH mesh reads each KVM host's
        # keys) would stop at them
        kept, lost = self.reachable()
        limit = [n.hostname for n in kept.site.nodes]
        if lost:
            text = _("deploying the new layout on {nodes} (left out, not answering: {lost})")
        else:
            text = _("deploying the new layout on {nodes}")
        self.say(text.format(nodes=", ".join(limit), lost=", ".join(lost)))
        result = deploy.deploy(kept, say=self.say)
        if result.status != "successful" or result.rc != 0:
            raise OnehciError(_("the deploy failed ({status}); its output is above; run the same command again "
                                "once the cause is fixed").format(status=result.status))
        return {"nodes": limit, "left_out": lost}

    def verify(self, before: int | None) -> dict:
        node = self.new
        self.wait_master(node.ip, node)
        after = self.version_now(node.ip)
        if after is None:
            raise OnehciError(_("the master on {node} answers but shows no metadata version (mfscli -SIM)")
                              .format(node=node.hostname))
        if before is not None and after < before:
            raise OnehciError(_("the recovered metadata is at version {after}, lower than the {before} found on disk: "
                                "changes were lost; stop the master on {node} and read "
                                "docs/operations/recover-master.md").format(after=after, before=before,
                                                                            node=node.hostname))
        def nothing_missing():  # the chunkservers tell the master which chunks they hold
            health = mfs.health(node.ip)
            missing = health.chunks.get("missing", 0) if health.reachable else None
            return health if missing == 0 and health.chunkservers else Pending(str(missing))

        health = wait_until(nothing_missing, timeout=self.timeout, every=2, timed_out=lambda missing: (
            _("MooseFS still has {missing} missing chunks {seconds} s after the master came back: "
              "`onehci status` shows which chunkservers are not connected").format(missing=missing,
                                                                                   seconds=f"{self.timeout:.0f}")))
        self.say(_("metadata version {after} (on disk before: {before}); no chunk missing").format(after=after,
                                                                                                  before=before))
        loggers = self.metaloggers(after)
        return {"before": before, "after": after, "chunks": health.chunks, "metaloggers": loggers}

    def metalogger_state(self, node, connected: set[str], since: int) -> dict:
        listing = self.sh(node, _inspect_script(LOGGER_FILES), _("reading the metalogger's data directory"))
        version, linked = disk_version(listing)[0], node.ip in connected
        return {"connected": linked, "version": version, "caught_up": linked and version >= since}

    def metaloggers(self, since: int) -> dict:
        """The site's metaloggers (those that answer), once they hold every change up to version
        SINCE, or after METALOGGER_WAIT seconds; those still behind are reported. A metalogger that
        missed changes while the master was down (the recovery's own `mfsmaster -a` run makes some)
        only notices at the master's next change, then downloads the metadata again."""
        plan = make_plan(self.loaded.site)
        nodes = [plan.node(h) for h in plan.moosefs.metaloggers if h != self.new.hostname]
        nodes = [n for n in nodes if remote.alive(self.loaded, n.ip, timeout=10)]
        if not nodes:
            return {}
        state: dict = {}

        def caught_up():
            connected = set(mfs.health(self.new.ip).metaloggers)
            state.update({n.hostname: self.metalogger_state(n, connected, since) for n in nodes})
            return all(s["caught_up"] for s in state.values()) or Pending("metaloggers catching up")

        try:
            wait_until(caught_up, timeout=METALOGGER_WAIT, every=2, timed_out=lambda left: left)
        except OnehciError:
            pass  # not fatal: each metalogger that has not caught up is warned about below
        for hostname, s in state.items():
            if not s["connected"]:
                self.say(_("warning: the metalogger on {node} is not connected to the master {seconds} s after the "
                           "recovery: `journalctl -u moosefs-metalogger` there").format(node=hostname,
                                                                                        seconds=METALOGGER_WAIT))
            elif not s["caught_up"]:
                self.say(_("warning: the metalogger on {node} holds metadata up to version {version}, the "
                           "master {since}: it downloads the metadata again at the master's next change (any write "
                           "on the filesystem); a promotion from {node} before that would lose the changes "
                           "in between").format(node=hostname, version=s["version"], since=since))
            else:
                self.say(_("the metalogger on {node} holds the master's changes (version {version})").format(
                    node=hostname, version=s["version"]))
        return state

    def healthy(self) -> dict:
        """Green within the timeout (free space aside), or an error naming what is not. A node
        that does not answer (the lost master host, still in site.yml) is left out and named."""
        kept, lost = self.reachable() if self.source else (sitefile.load(self.loaded.path), [])
        result = installing.wait_healthy(kept, make_plan(kept.site), timeout=self.healthy_timeout, say=self.say,
                                         after=_("the recovery"))
        if lost:
            self.say(_("status green without {nodes}, which does not answer and is still in site.yml: take "
                       "it out of the site or put new hardware in its place (docs/operations/recover-master.md, B.9)")
                     .format(nodes=", ".join(lost)))
        return {**result, "left_out": lost}


def recover_master(loaded, source: str | None = None, *, say: Say = print,
                   confirm: Callable[[dict], bool] = lambda facts: True, answers: dict[str, bool] | None = None,
                   timeout: float = 300, healthy_timeout: float = 600) -> dict:
    """Run (or continue) the recovery; returns the finished journal (journal.status() form) with
    a `summary` of what was found and done. Ends green (free space aside) or raises."""
    work = Recovery(loaded, source, say=say, confirm=confirm, timeout=timeout, healthy_timeout=healthy_timeout)
    if source and work.new is None:
        raise OnehciError(_("--from {node}: not a node of the site (its nodes: {nodes})").format(
            node=source, nodes=", ".join(n.hostname for n in work.plan.nodes)))
    steps = PROMOTION if source else IN_PLACE
    target = work.new.hostname
    command = f"onehci recover-master {loaded.path}" + (f" --from {source}" if source else "")
    j = journal.Journal.open(loaded.path, "recover-master", target, steps, params={"from": source}, command=command)
    with j:
        for step, took_effect in (answers or {}).items():
            j.confirm(step, took_effect)
        first = j.data["steps"][0]
        if first["status"] != journal.DONE:
            facts = j.preflight("preflight", work.preflight_promotion if source else work.preflight_in_place)
        else:
            facts = first["result"]
            say(_("continuing recover-master at {where}").format(where=j.status()["where"]))
        before = facts.get("before")
        work.resume(facts)
        if source:
            j.run("site", work.site, say=say)
            j.run("install", work.install, say=say)
            j.run("promote", work.promote, check_done=work.promoted, say=say)
            for name, fn in (("repoint", work.repoint), ("forget", work.forget), ("deploy", work.deploy)):
                j.run(name, fn, say=say)
        elif facts.get("running"):
            for name in ("restart",):
                j.run(name, lambda: {"started": False, "note": _("the master was running")}, say=say)
        else:
            j.run("restart", work.restart, check_done=lambda: work.running_under_systemd(work.old), say=say)
        checked = j.run("verify", lambda: work.verify(before), say=say)
        health = j.run("healthy", work.healthy, say=say)
        result = j.finish()
    result["summary"] = {"master": target, "promoted_from_metalogger": bool(source),
                         "metadata_version_before": (checked or {}).get("before"),
                         "metadata_version_after": (checked or {}).get("after"),
                         "metaloggers_behind": sorted(h for h, s in ((checked or {}).get("metaloggers") or {}).items()
                                                      if not s["caught_up"]),
                         "status": (health or {}).get("verdict"), "left_out": (health or {}).get("left_out", [])}
    say(_("recover-master: the MooseFS master runs on {master} (metadata version {after}, {before} before); "
          "status {verdict}").format(master=target, after=(checked or {}).get("after"),
                                     before=(checked or {}).get("before"), verdict=(health or {}).get("verdict")))
    return result


def _replace(path: Path, text: str) -> None:
    """PATH's text replaced atomically (a file beside it, renamed over it), its mode kept."""
    spare = path.with_name(f".{path.name}.{os.getpid()}.new")
    try:
        spare.write_text(text, encoding="utf-8")
        spare.chmod(path.stat().st_mode & 0o777)
        os.replace(spare, path)
    finally:
        spare.unlink(missing_ok=True)

