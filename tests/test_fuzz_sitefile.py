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
