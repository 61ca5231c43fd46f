"""Random YAML documents and random mutations of the profiles: the loader raises only
its own errors, and the CLI never prints a traceback and exits 0 or 1."""

from __future__ import annotations

import io

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import yaml

from installer import sitefile
from installer.cli.main import cli
from installer.errors import OnehciError
from installer.resources import profiles

PROFILE_TEXTS = [p.read_text() for p in profiles().values()]
FIELD_NAMES = ["format", "cluster", "networks", "nodes", "mac", "ip", "roles", "goal", "storage", "hostname",
               "os_disk", "chunk_disks", "serial", "management", "cidr", "access", "bootstrap"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=False),
                    st.text(max_size=30), st.sampled_from(["192.168.10.7", "52:54:00:00:00:01", "/dev/sda",
                                                           "kvm", "$6$x$y", "1", "own"]))
documents = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=8)),
                                               children, max_size=5)),
    max_leaves=25,
)


def _dump(document) -> str:
    buf = io.StringIO()
    yaml.safe_dump(document, buf)
    return buf.getvalue()


@st.composite
def mutated_profiles(draw):
    lines = draw(st.sampled_from(PROFILE_TEXTS)).splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["delete", "duplicate", "swap", "garble", "retype", "indent"]))
        if action == "delete" and len(lines) > 1:
            del lines[i]
        elif action == "duplicate":
            lines.insert(i, lines[i])
        elif action == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif action == "garble" and lines[i]:
            k = draw(st.integers(0, len(lines[i]) - 1))
            lines[i] = lines[i][:k] + draw(st.sampled_from(list(":-[]{}#&*!|>'\"%@` \t0aZ"))) + lines[i][k + 1:]
        elif action == "retype" and ":" in lines[i]:
            key = lines[i].split(":")[0]
            lines[i] = key + ": " + draw(st.sampled_from(["", "[]", "{}", "~", "yes", "-1", "1.5", "[a, b]", "x"]))
        elif action == "indent":
            lines[i] = draw(st.sampled_from(["", " ", "  ", "    "])) + lines[i].lstrip()
    return "\n".join(lines) + "\n"


def _check(tmp_path, text: str) -> None:
    path = tmp_path / "site.yml"
    path.write_text(text, encoding="utf-8")
    try:
        sitefile.load(path)
    except OnehciError:
        pass  # the only exception family the loader may raise
    result = CliRunner().invoke(cli, ["validate", str(path)], catch_exceptions=True)
    assert result.exit_code in (0, 1), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(documents)
def test_random_yaml_documents(tmp_path, document):
    _check(tmp_path, _dump(document))


@FUZZ
@given(mutated_profiles())
def test_mutated_profiles(tmp_path, text):
    _check(tmp_path, text)


@FUZZ
@given(st.text(max_size=200))
def test_random_text(tmp_path, text):
    _check(tmp_path, text)


def _check_bytes(tmp_path, data: bytes, limit: float = 10.0) -> None:
    """As _check, on raw bytes, in a child process with a memory cap and a time limit: a document
    that would blow up (aliases) must be refused, not run the machine out."""
    import subprocess
    import sys

    path = tmp_path / "site.yml"
    path.write_bytes(data)
    code = ("import resource, sys\nresource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
            "from installer.cli.main import main\nsys.argv = ['onehci', 'validate', sys.argv[1]]\nmain()")
    run = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=limit)
    assert run.returncode in (0, 1), run.stdout + run.stderr
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr, run.stderr


@st.composite
def hostile_bytes(draw):
    """A profile with what a hand-edited or copied file may carry: aliases (repeated, nested),
    tags, a BOM, CRLF endings, bytes that are not UTF-8, long values."""
    text = draw(st.sampled_from(PROFILE_TEXTS))
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        lines.insert(i, draw(st.sampled_from([
            "x: &a [1, 2, 3]", "y: &b [*a, *a, *a, *a]", "z: [*b, *b, *b, *b, *b]", "w: *nosuch",
            "t: !!python/object:os.system echo", "u: !custom value", "v: !!binary aGVsbG8=", "%YAML 1.1",
            "k: " + "A" * draw(st.integers(1000, 100_000)), "  - &self [*self]", "q: <<: *a"])))
    data = "\n".join(lines).encode()
    if draw(st.booleans()):
        data = data.replace(b"\n", b"\r\n")
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\x00", b"\x1b[2J", b"\xed\xa0\x80"])) + data[at:]
    return data


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hostile_bytes())
def test_hostile_bytes_are_refused_cleanly_within_time_and_memory(tmp_path, data):
    _check_bytes(tmp_path, data)


@st.composite
def layouts(draw):
    """The five-node profile with some nodes' `ip:` removed and their `mac:` written in another
    YAML layout (same line, next line, folded or literal block, quoted)."""
    lines = profiles()["five-node"].read_text().splitlines()
    out = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("ip:") and draw(st.booleans()):
            continue  # this node's address is then allocated by the plan
        if stripped.startswith("mac:"):
            indent = line[:len(line) - len(line.lstrip())]
            mac = stripped.split()[1]
            style = draw(st.sampled_from(["same", "next", "folded", "literal", "quoted", "comment"]))
            out += {"same": [line], "next": [f"{indent}mac:", f"{indent}  {mac}"],
                    "folded": [f"{indent}mac: >-", f"{indent}  {mac}"],
                    "literal": [f"{indent}mac: |-", f"{indent}  {mac}"], "quoted": [f'{indent}mac: "{mac}"'],
                    "comment": [f"{indent}mac: {mac}   # NIC 1"]}[style]
            continue
        out.append(line)
    return "\n".join(out) + "\n"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layouts())
def test_plan_write_round_trip_adds_only_the_ip_lines(tmp_path, text):
    site = tmp_path / "site.yml"
    site.write_text(text)
    result = CliRunner().invoke(cli, ["plan", "--write", str(site)])
    assert result.exit_code == 0, result.output
    after = site.read_text()
    before_lines, after_lines = text.splitlines(), after.splitlines()
    added = [ln for ln in after_lines if ln not in before_lines]
    assert all(ln.strip().startswith("ip: ") for ln in added), added
    assert [ln for ln in after_lines if not ln.strip().startswith("ip: ")] == \
        [ln for ln in before_lines if not ln.strip().startswith("ip: ")]
    loaded = sitefile.load(site).site
    assert all(n.ip is not None for n in loaded.nodes)
