"""One case per validation rule: a mutation of a valid site, and the exact field,
line and message it must produce."""

from __future__ import annotations

import pytest

from installer import sitefile
from installer.errors import OnehciError, SiteInvalid
from installer.passwords import sha512_crypt
from tests.conftest import BASE_SITE, SSH_KEY, line_of

# (id, old text, new text, expected field, marker of the expected line, message fragment)
ERROR_CASES = [
    ("wrong-type", "size: 100", "size: lots", "networks.vms.size", "size: lots", "expected a whole number"),
    ("quoted-number", "goal: 2", 'goal: "2"', "storage.goal", 'goal: "2"', "expected a whole number"),
    ("missing-field", "    gateway: 192.168.10.1\n", "", "networks.management.gateway", "management:",
     "required field is missing"),
    ("unknown-format", "format: 1", "format: 2", "format", "format: 2", "unknown format 2"),
    ("unknown-key", "  interface: eno1", "  interfase: eno1", "bootstrap.interfase", "interfase",
     "did you mean 'interface'"),
    ("bad-choice", "dhcp: own", "dhcp: maybe", "networks.management.dhcp", "dhcp: maybe", "'maybe' is not one of"),
    ("bad-role", "roles: [kvm, mfs_chunkserver, mfs_metalogger]\n    os_disk: {serial: OS2}",
     "roles: [kvm, mfs_chunkserver, mfs_logger]\n    os_disk: {serial: OS2}", "nodes[1].roles[2]",
     "mfs_logger", "'mfs_logger' is not one of"),
    ("hostname-form", "hostname: n2", "hostname: N_2", "nodes[1].hostname", "hostname: N_2", "not a valid host name"),
    ("hostname-unique", "hostname: n3", 'hostname: "n2"', "nodes[2].hostname", '"n2"',
     "n2 is also used by nodes[1] (n2, line 29)"),
    ("mac-form", "mac: 52:54:00:00:00:03", "mac: 52:54:00:00:03", "nodes[2].mac", "mac: 52:54:00:00:03",
     "not a MAC address"),
    ("mac-unique-any-form", "mac: 52:54:00:00:00:03", "mac: 52-54-00-00-00-02", "nodes[2].mac",
     "mac: 52-54-00-00-00-02", "52:54:00:00:00:02 is also used by nodes[1]"),
    ("ip-form", "ip: 192.168.10.12", "ip: 192.168.10.300", "nodes[1].ip", "ip: 192.168.10.300",
     "not an IPv4 address"),
    ("ip-outside", "ip: 192.168.10.12", "ip: 192.168.11.12", "nodes[1].ip", "ip: 192.168.11.12",
     "outside networks.management 192.168.10.0/24"),
    ("ip-network-address", "ip: 192.168.10.12", "ip: 192.168.10.0", "nodes[1].ip", "ip: 192.168.10.0",
     "network address"),
    ("ip-broadcast", "ip: 192.168.10.12", "ip: 192.168.10.255", "nodes[1].ip", "ip: 192.168.10.255",
     "broadcast address"),
    ("ip-gateway", "ip: 192.168.10.12", 'ip: "192.168.10.1"', "nodes[1].ip", '"192.168.10.1"', "gateway"),
    ("ip-bootstrap", "ip: 192.168.10.12", "ip: 192.168.10.5", "nodes[1].ip", "ip: 192.168.10.5", "bootstrap"),
    ("ip-unique", "ip: 192.168.10.12", 'ip: "192.168.10.11"', "nodes[1].ip", '"192.168.10.11"',
     "also used by nodes[0] (n1, line 23)"),
    ("network-host-bits", "cidr: 192.168.10.0/24", "cidr: 192.168.10.7/24", "networks.management.cidr",
     "cidr: 192.168.10.7/24", "host bits set"),
    ("vms-range-outside", "size: 100", "size: 300", "networks.vms.size", "size: 300", "does not fit"),
    ("vms-overlap", "cidr: 192.168.20.0/24", "cidr: 192.168.0.0/16", "networks.vms.cidr", "192.168.0.0/16",
     "overlaps networks.management 192.168.10.0/24"),
    ("bootstrap-outside", "address: 192.168.10.5", "address: 10.0.0.5", "bootstrap.address", "10.0.0.5",
     "outside networks.management"),
    ("gateway-outside", "gateway: 192.168.10.1", "gateway: 192.168.99.1", "networks.management.gateway",
     "192.168.99.1", "outside"),
    ("two-masters", "roles: [kvm, mfs_chunkserver, mfs_metalogger]\n    os_disk: {serial: OS2}",
     "roles: [kvm, mfs_chunkserver, mfs_master]\n    os_disk: {serial: OS2}", "nodes[1].roles",
     "mfs_master]", "mfs_master is already on n1"),
    ("no-frontend", "roles: [frontend, mfs_master, kvm, mfs_chunkserver]", "roles: [mfs_master, kvm, mfs_chunkserver]",
     "nodes", "nodes:", "no node has the role frontend"),
    ("goal-vs-chunkservers", "goal: 2", "goal: 4", "storage.goal", "goal: 4",
     "4 copies need at least 4 chunkservers, the site has 3"),
    ("chunkserver-without-disks", "    chunk_disks: [{serial: C2}]\n", "", "nodes[1].chunk_disks",
     "hostname: n2", "lists no chunk_disks"),
    ("disk-by-dev-name", "os_disk: /dev/disk/by-id/ata-DISK3", "os_disk: /dev/sdb", "nodes[2].os_disk",
     "/dev/sdb", "onehci discover"),
    ("os-disk-as-chunk-disk", "chunk_disks: [/dev/disk/by-id/ata-CHUNK3]", "chunk_disks: [/dev/disk/by-id/ata-DISK3]",
     "nodes[2].chunk_disks[0]", "chunk_disks: [/dev/disk/by-id/ata-DISK3]", "os_disk of n3"),
    ("disk-on-two-nodes", "chunk_disks: [{serial: C2}]", 'chunk_disks: [{serial: "C1"}]', "nodes[1].chunk_disks[0]",
     '"C1"', "also listed for nodes[0] (n1"),
    ("same-disk-by-path-and-serial", "os_disk: /dev/disk/by-id/ata-DISK3", "os_disk: /dev/disk/by-id/ata-MODEL_C2",
     "nodes[2].os_disk", "ata-MODEL_C2", "also listed for nodes[1] (n2"),
    ("password-hash-form", "storage:", '  root_password_hash: "secret$6$"\nstorage:', "access.root_password_hash",
     "root_password_hash", "onehci hash-password"),
    ("plaintext-password", "storage:", "  root_password: hunter2\nstorage:", "access.root_password",
     "root_password:", "onehci hash-password"),
    ("ssh-key-garbage", SSH_KEY, "ssh-ed25519 AAAAnotakey tech", "access.ssh_authorized_keys[0]",
     "AAAAnotakey", "does not parse"),
    ("ssh-key-not-a-key", SSH_KEY, "hello world", "access.ssh_authorized_keys[0]", "hello world",
     "not an SSH public key"),
    ("timezone", "timezone: Europe/Paris", "timezone: Europe/Dijon", "cluster.timezone", "Europe/Dijon",
     "not a time zone"),
]


def _first_line_with(text: str, marker: str) -> int:
    return next(i + 1 for i, line in enumerate(text.splitlines()) if marker in line)


@pytest.mark.parametrize("case", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_each_rule_reports_field_and_line(write_site, case):
    _, old, new, field, marker, fragment = case
    assert old in BASE_SITE, f"the case does not apply to the base site: {old!r}"
    text = BASE_SITE.replace(old, new, 1)
    path = write_site(text)
    with pytest.raises(SiteInvalid) as info:
        sitefile.load(path)
    errors = info.value.errors
    matching = [p for p in errors if p.field == field]
    assert matching, f"no error on {field}; got {[p.render() for p in errors]}"
    problem = matching[0]
    assert fragment in problem.message, problem.render()
    assert problem.line == _first_line_with(text, marker), problem.render()
    assert problem.file == str(path)


def test_the_base_site_is_valid(write_site):
    loaded = sitefile.load(write_site())
    assert [n.hostname for n in loaded.site.nodes] == ["n1", "n2", "n3"]
    assert loaded.warnings == []


def test_yaml_syntax_error_has_line_and_column(write_site):
    text = BASE_SITE.replace("dns: [192.168.10.1]", "dns: [192.168.10.1")
    with pytest.raises(SiteInvalid) as info:
        sitefile.load(write_site(text))
    (problem,) = info.value.errors
    assert problem.message.startswith("YAML syntax error column")
    assert problem.line is not None and problem.line >= line_of(text, "dns: [192.168.10.1")


def test_duplicate_yaml_key_is_named(write_site):
    text = BASE_SITE.replace("  goal: 2", "  goal: 2\n  goal: 3")
    with pytest.raises(SiteInvalid) as info:
        sitefile.load(write_site(text))
    (problem,) = info.value.errors
    assert "duplicate key 'goal'" in problem.message
    assert problem.line == line_of(text, "goal: 3")


def test_every_error_is_reported_at_once(write_site):
    text = (BASE_SITE.replace("mac: 52:54:00:00:00:03", "mac: 52:54:00:00:00:02")
            .replace("ip: 192.168.10.12", "ip: 192.168.11.12").replace("goal: 2", "goal: 4"))
    with pytest.raises(SiteInvalid) as info:
        sitefile.load(write_site(text))
    assert sorted(p.field for p in info.value.errors) == ["nodes[1].ip", "nodes[2].mac", "storage.goal"]


def test_field_errors_are_all_reported_in_one_pass(write_site):
    text = (BASE_SITE.replace("size: 100", "size: lots").replace("hostname: n2", "hostname: N_2")
            .replace("interface: eno1", "interfase: eno1"))
    with pytest.raises(SiteInvalid) as info:
        sitefile.load(write_site(text))
    assert {p.field for p in info.value.errors} == {"networks.vms.size", "nodes[1].hostname", "bootstrap.interfase"}


def test_plaintext_password_is_never_echoed(write_site):
    text = BASE_SITE.replace("storage:", "  root_password: hunter2-Secret\nstorage:")
    with pytest.raises(SiteInvalid) as info:
        sitefile.load(write_site(text))
    assert all("hunter2" not in p.render() for p in info.value.problems)


def test_macs_are_normalised(write_site):
    text = BASE_SITE.replace("mac: 52:54:00:00:00:03", "mac: 52-54-00-AA-bb-03")
    loaded = sitefile.load(write_site(text))
    assert loaded.site.nodes[2].mac == "52:54:00:aa:bb:03"


def test_a_real_sha512_hash_is_accepted(write_site):
    hashed = sha512_crypt("correct horse")
    text = BASE_SITE.replace("storage:", f'  root_password_hash: "{hashed}"\nstorage:')
    loaded = sitefile.load(write_site(text))
    assert loaded.site.access.root_password_hash == hashed


def test_yescrypt_hash_is_accepted(write_site):
    from installer.passwords import crypt

    hashed = crypt("correct horse", "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$")
    assert hashed.startswith("$y$")
    loaded = sitefile.load(write_site(BASE_SITE.replace("storage:", f'  root_password_hash: "{hashed}"\nstorage:')))
    assert loaded.site.access.root_password_hash == hashed


def test_goal_one_is_a_warning_not_an_error(write_site):
    loaded = sitefile.load(write_site(BASE_SITE.replace("goal: 2", "goal: 1")))
    (warning,) = [w for w in loaded.warnings if w.field == "storage.goal"]
    assert warning.severity == "warning" and "single copy" in warning.message
    assert warning.line == line_of(BASE_SITE, "goal: 2")


def test_no_metalogger_off_the_master_is_a_warning(write_site):
    text = BASE_SITE.replace(", mfs_metalogger]", "]")
    loaded = sitefile.load(write_site(text))
    assert [w.field for w in loaded.warnings] == ["nodes"]
    assert "metalogger" in loaded.warnings[0].message


def test_top_level_must_be_a_mapping(write_site):
    with pytest.raises(SiteInvalid) as info:
        sitefile.load(write_site("- just\n- a list\n"))
    assert "YAML mapping" in info.value.errors[0].message


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(OnehciError, match="no such file"):
        sitefile.load(tmp_path / "nope.yml")


@pytest.mark.parametrize("profile", ["single-node", "three-node", "five-node", "lab"])
def test_profiles_are_valid(profile):
    from installer.resources import profiles

    loaded = sitefile.load(profiles()[profile])
    assert loaded.site.format == 1
    if profile != "single-node":
        assert loaded.warnings == []


def test_a_misspelt_section_gives_one_error_with_a_suggestion(write_site):
    text = BASE_SITE.replace("storage:", "storgae:")
    with pytest.raises(SiteInvalid) as info:
        sitefile.load(write_site(text))
    (problem,) = info.value.errors
    assert problem.field == "storgae" and "did you mean 'storage'" in problem.message


@pytest.mark.parametrize("kind", ["ed25519", "rsa", "ecdsa"])
def test_real_public_keys_of_each_type_parse(write_site, tmp_path, kind):
    import subprocess

    key = tmp_path / f"id_{kind}"
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "t@x", "-f", str(key)], check=True)
    public = (tmp_path / f"id_{kind}.pub").read_text().strip()
    loaded = sitefile.load(write_site(BASE_SITE.replace(SSH_KEY, public)))
    assert loaded.site.access.ssh_authorized_keys == [public]
    # the same key with one byte of its blob cut off is refused
    kind_name, blob, _ = public.split(" ")
    import base64

    cut = base64.b64encode(base64.b64decode(blob)[:-1]).decode()
    with pytest.raises(SiteInvalid, match="1 error"):
        sitefile.load(write_site(BASE_SITE.replace(SSH_KEY, f"{kind_name} {cut} t@x")))


def test_private_key_is_refused(write_site):
    with pytest.raises(SiteInvalid) as info:
        sitefile.load(write_site(BASE_SITE.replace(SSH_KEY, "-----BEGIN OPENSSH PRIVATE KEY----- b3Blbn")))
    assert "private key" in info.value.errors[0].message
