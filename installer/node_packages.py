"""What the OS install puts on a node: the preseed's `pkgsel/include`, which the lab's base image
copies. The hypervisor's Debian packages come with the install on KVM hosts, so that a node's first
deploy (and a rebuild's) does not spend minutes unpacking QEMU and libvirt; the opennebula_node role
still installs them when they are missing (its list is a superset, tests/unit/test_pxe.py checks)."""

from __future__ import annotations

BASE = ("openssh-server", "python3", "ca-certificates")  # SSH and Python for Ansible
KVM_HOST = ("libvirt-daemon-system", "libvirt-clients", "qemu-system-x86")


def for_node(node) -> list[str]:
    return [*BASE, *(KVM_HOST if node.has("kvm") else ())]
