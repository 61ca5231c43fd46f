#!/usr/bin/python3
# Copyright onehci authors. Apache-2.0.
"""Ansible module: find and inspect MooseFS chunk disks (read-only; it never writes to a disk)."""

from __future__ import annotations

import os
import re

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: onehci_chunk_disks
short_description: Resolve the chunk disks of a node and decide which ones may be formatted
description:
  - Resolves every entry of C(disks) (a /dev/disk/by-id path, or a mapping C({serial: X}) matched to the
    by-id link whose name ends with C(-X) or C(_X), partitions excluded) to a block device.
  - Probes each device with C(blkid -p) and sysfs, and classifies it as C(ours) (XFS labelled I(label),
    made by this role), C(blank) (no filesystem, no partition table), C(consented) (holds something, but
    listed in I(consent)) or refused (holds something and not listed).
  - Fails, naming every refused disk and what it holds, when any disk is refused, unknown, or in use
    (mounted elsewhere, swap, held by LVM/RAID/device-mapper). A disk in use is refused even with consent.
  - Never changes anything; safe in check mode.
options:
  disks:
    description: The node's onehci_chunk_disks.
    type: list
    elements: raw
    required: true
  consent:
    description: Disk identifiers (by-id path or C(serial:X)) that may be formatted although they hold data.
    type: list
    elements: str
    default: []
  label:
    description: XFS label that marks a disk formatted by this role.
    type: str
    default: onehci-mfs
  mount_base:
    description: Directory under which each disk is mounted at C(<mount_base>/<name>).
    type: path
    default: /mnt/mfschunks
  by_id_dir:
    description: Where the persistent disk links are.
    type: path
    default: /dev/disk/by-id
  require_formatted:
    description: Fail unless every disk is C(ours) with a filesystem UUID (the check after formatting).
    type: bool
    default: false
  host:
    description: The node's name in the site, for the C(onehci deploy --format-disk HOST:ID) hint.
    type: str
    default: ""
author: onehci
"""

RETURN = r"""
disks:
  description: One entry per disk, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    id: {description: "The disk's identifier: the by-id path, or serial:X.", type: str}
    link: {description: The by-id link that names it., type: str}
    device: {description: The block device the link points to., type: str}
    name: {description: Short name, used for the mount point., type: str}
    mountpoint: {description: Where the role mounts it., type: str}
    state: {description: "ours, blank or consented.", type: str}
    uuid: {description: Filesystem UUID (empty when there is none)., type: str}
    holds: {description: What the disk holds, in words., type: str}
"""

LABEL_MAX = 12  # XFS labels are at most 12 characters
PART_LINK = re.compile(r"-part\d+$")


class DiskError(Exception):
    """A disk that cannot be used; the message is written for the technician."""


class NeedsConsent(DiskError):
    """A disk that holds data and is not listed in the consent list."""


def disk_id(entry) -> str:
    """The identifier of an onehci_chunk_disks entry, as onehci_format_consent spells it."""
    if isinstance(entry, str):
        if not entry.startswith("/"):
            raise DiskError(f"{entry!r}: a chunk disk is an absolute /dev/disk/by-id path or {{serial: X}}")
        return entry
    if isinstance(entry, dict) and set(entry) == {"serial"} and str(entry["serial"]).strip():
        return f"serial:{entry['serial']}"
    raise DiskError(f"{entry!r}: a chunk disk is an absolute /dev/disk/by-id path or {{serial: X}}")


def resolve(entry, by_id_dir: str) -> tuple[str, str]:
    """(link, device) for an entry; DiskError when no single device matches."""
    ident = disk_id(entry)
    if isinstance(entry, str):
        if not os.path.exists(entry):
            raise DiskError(f"{ident}: no such disk on this host")
        return entry, os.path.realpath(entry)
    serial = str(entry["serial"])
    try:
        names = sorted(os.listdir(by_id_dir))
    except OSError:
        names = []
    links = [os.path.join(by_id_dir, n) for n in names
             if (n.endswith("-" + serial) or n.endswith("_" + serial)) and not PART_LINK.search(n)]
    devices = sorted({os.path.realpath(link) for link in links if os.path.exists(link)})
    if not devices:
        raise DiskError(f"{ident}: no disk with this serial under {by_id_dir} "
                        f"(`onehci discover` on the node lists its disks)")
    if len(devices) > 1:
        raise DiskError(f"{ident}: the serial matches several disks ({', '.join(links)}); "
                        f"name the disk by its /dev/disk/by-id path instead")
    link = next(lk for lk in links if os.path.realpath(lk) == devices[0])
    return link, devices[0]


def short_name(entry, link: str) -> str:
    raw = str(entry["serial"]) if isinstance(entry, dict) else os.path.basename(link)
    return re.sub(r"[^A-Za-z0-9._-]", "_", raw)


def parse_export(text: str) -> dict:
    """KEY=VALUE lines of `blkid -o export`."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def describe(probe: dict, partitions: list[tuple[str, dict]]) -> str:
    """What a disk holds, in words; "" when it holds nothing blkid or sysfs can see."""
    what = []
    if probe.get("AMBIVALENT"):
        what.append("several conflicting signatures")
    if probe.get("TYPE"):
        label = f" labelled {probe['LABEL']!r}" if probe.get("LABEL") else ""
        fstype = probe["TYPE"]
        what.append(f"{'an' if fstype[:1] in 'aeiou' else 'a'} {fstype} filesystem{label}")
    if probe.get("PTTYPE") or partitions:
        table = f"a {probe['PTTYPE']} partition table" if probe.get("PTTYPE") else "partitions"
        if partitions:
            parts = ", ".join(f"{name}: {p.get('TYPE') or 'no filesystem'}" for name, p in partitions)
            table += f" with {len(partitions)} partition(s) ({parts})"
        what.append(table)
    return " and ".join(what)


def classify(probe: dict, partitions: list, uses: list[str], consented: bool, label: str) -> tuple[str, str]:
    """(state, holds) of a disk; DiskError when it must not be used. Pure: the policy in one place."""
    holds = describe(probe, partitions)
    if uses:
        raise DiskError(f"is in use ({'; '.join(uses)}); it is never formatted, even with consent")
    if probe.get("TYPE") == "xfs" and probe.get("LABEL") == label and not partitions and not probe.get("PTTYPE"):
        return "ours", holds
    if not holds:
        return "blank", ""
    if consented:
        return "consented", holds
    raise NeedsConsent(f"holds {holds}")


class System:
    """What the module reads from the node; tests replace it."""

    def __init__(self, module=None):
        self.module = module

    def blkid(self, device: str) -> dict:
        rc, out, err = self.module.run_command(["blkid", "-p", "-o", "export", "--", device])
        if rc == 2:
            return {}
        if rc == 8:
            return {"AMBIVALENT": "1"}
        if rc != 0:
            raise DiskError(f"blkid failed on {device}: {err.strip() or out.strip()}")
        return parse_export(out)

    def partitions(self, device: str) -> list[str]:
        name = os.path.basename(device)
        base = f"/sys/class/block/{name}"
        try:
            entries = os.listdir(base)
        except OSError:
            return []
        return sorted(e for e in entries if e.startswith(name) and os.path.exists(f"{base}/{e}/partition"))

    def holders(self, name: str) -> list[str]:
        try:
            return sorted(os.listdir(f"/sys/class/block/{name}/holders"))
        except OSError:
            return []

    def mounts(self) -> list[tuple[str, str]]:
        """(major:minor, mount point) of every mount."""
        out = []
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                out.append((fields[2], fields[4].replace("\\040", " ")))
        return out

    def swaps(self) -> list[str]:
        try:
            with open("/proc/swaps", encoding="utf-8") as f:
                return [line.split()[0] for line in f.readlines()[1:] if line.strip()]
        except OSError:
            return []

    def majmin(self, path: str) -> str:
        try:
            rdev = os.stat(path).st_rdev
        except OSError:
            return ""
        return f"{os.major(rdev)}:{os.minor(rdev)}"

    def sys_majmin(self, name: str) -> str:
        try:
            with open(f"/sys/class/block/{name}/dev", encoding="utf-8") as f:
                return f.read().strip()
        except OSError:
            return ""


def uses_of(system: System, device: str, parts: list[str], mountpoint: str) -> list[str]:
    """Ways the device or its partitions are in use, other than our own mount at mountpoint."""
    name = os.path.basename(device)
    uses = []
    own = system.majmin(device) or system.sys_majmin(name)
    nums = {own: name} if own else {}
    for part in parts:
        mm = system.sys_majmin(part)
        if mm:
            nums[mm] = part
    for mm, where in system.mounts():
        if mm in nums and not (mm == own and where == mountpoint):
            uses.append(f"{nums[mm]} mounted at {where}")
    swaps = set(system.swaps())
    for n in [name, *parts]:
        if f"/dev/{n}" in swaps:
            uses.append(f"{n} is swap")
        held = system.holders(n)
        if held:
            uses.append(f"{n} held by {', '.join(held)}")
    return uses


def consent_devices(consent: list[str], by_id_dir: str) -> set[str]:
    """Devices named by consent entries that exist here (best effort: unknown entries are ignored)."""
    devices = set()
    for item in consent:
        entry = {"serial": item[len("serial:"):]} if item.startswith("serial:") else item
        try:
            devices.add(resolve(entry, by_id_dir)[1])
        except DiskError:
            continue
    return devices


def inspect(disks: list, consent: list[str], label: str, mount_base: str, by_id_dir: str,
            system: System, require_formatted: bool = False) -> tuple[list[dict], list[str], list[str]]:
    """(disk records, problems, identifiers of the disks that need consent).

    Problems are whole sentences naming the disk."""
    records, problems, seen, need_consent = [], [], {}, []
    consented_devices = consent_devices(consent, by_id_dir)
    for entry in disks:
        try:
            ident = disk_id(entry)
            link, device = resolve(entry, by_id_dir)
        except DiskError as e:
            problems.append(str(e))
            continue
        if device in seen:
            problems.append(f"{ident}: the same disk ({device}) as {seen[device]}")
            continue
        seen[device] = ident
        name = short_name(entry, link)
        mountpoint = f"{mount_base.rstrip('/')}/{name}"
        try:
            probe = system.blkid(device)
            part_names = system.partitions(device)
            partitions = [(p, system.blkid(f"/dev/{p}") if os.path.exists(f"/dev/{p}") else {}) for p in part_names]
            consented = ident in consent or link in consent or device in consented_devices
            state, holds = classify(probe, partitions, uses_of(system, device, part_names, mountpoint),
                                    consented, label)
        except DiskError as e:
            problems.append(f"{ident} ({device}) {e}")
            if isinstance(e, NeedsConsent):
                need_consent.append(ident)
            continue
        if require_formatted and (state != "ours" or not probe.get("UUID")):
            problems.append(f"{ident} ({device}) was not formatted: it holds {holds or 'nothing'}")
            continue
        records.append({"id": ident, "link": link, "device": device, "name": name, "mountpoint": mountpoint,
                        "state": state, "uuid": probe.get("UUID", "") if state == "ours" else "",
                        "holds": holds})
    return records, problems, need_consent


def main():
    module = AnsibleModule(
        argument_spec={
            "disks": {"type": "list", "elements": "raw", "required": True},
            "consent": {"type": "list", "elements": "str", "default": []},
            "label": {"type": "str", "default": "onehci-mfs"},
            "mount_base": {"type": "path", "default": "/mnt/mfschunks"},
            "by_id_dir": {"type": "path", "default": "/dev/disk/by-id"},
            "require_formatted": {"type": "bool", "default": False},
            "host": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    p = module.params
    if not p["label"] or len(p["label"]) > LABEL_MAX:
        module.fail_json(msg=f"label {p['label']!r}: an XFS label has 1 to {LABEL_MAX} characters")
    if not p["disks"]:
        module.fail_json(msg="no chunk disks: a chunkserver needs at least one entry in onehci_chunk_disks")
    records, problems, need_consent = inspect(p["disks"], p["consent"], p["label"], p["mount_base"], p["by_id_dir"],
                                System(module), p["require_formatted"])
    if problems:
        cli = " ".join(f"--format-disk {p['host']}:{i}" for i in need_consent) if p["host"] else ""
        hint = ("\nA disk that holds data is never formatted without consent. If what it holds may be lost, "
                f"add {', '.join(repr(i) for i in need_consent)} to onehci_format_consent"
                + (f" (onehci deploy {cli})" if cli else "") + " and deploy again."
                if need_consent else "")
        module.fail_json(msg="chunk disks that cannot be used:\n- " + "\n- ".join(problems) + hint,
                         disks=records, problems=problems)
    module.exit_json(changed=False, disks=records)


if __name__ == "__main__":
    main()
