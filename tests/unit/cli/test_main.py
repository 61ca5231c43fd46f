"""Every verb through Click's runner: exit codes, stdout/stderr, nothing written on error."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from installer.cli.main import cli
from installer.passwords import verify
from tests.conftest import BASE_SITE, REPO


@pytest.fixture
def run():
    def invoke(*args, input=None):
        return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)

    return invoke


def test_validate_ok(run, write_site):
    result = run("validate", str(write_site()))
    assert result.exit_code == 0
    assert "valid, 3 nodes, 0 warnings" in result.stdout


def test_validate_errors_exit_1_with_count_and_no_traceback(run, write_site):
    path = write_site(BASE_SITE.replace("goal: 2", "goal: 4").replace("ip: 192.168.10.12", "ip: 192.168.11.12"))
    result = run("validate", str(path))
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == "2 errors; nothing was written."
    assert any(line.startswith(f"{path}:31 nodes[1].ip: ") for line in lines)
    assert "Traceback" not in result.output


def test_validate_json(run, write_site):
    result = run("validate", "--json", str(write_site(BASE_SITE.replace("goal: 2", "goal: 4"))))
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["valid"] is False
    assert data["errors"][0]["field"] == "storage.goal" and data["errors"][0]["line"] == 21


def test_strict_turns_warnings_into_errors(run, write_site):
    path = str(write_site(BASE_SITE.replace("goal: 2", "goal: 1")))
    assert run("validate", path).exit_code == 0
    strict = run("validate", "--strict", path)
    assert strict.exit_code == 1 and "storage.goal:" in strict.stderr


def test_validate_missing_file(run, tmp_path):
    result = run("validate", str(tmp_path / "none.yml"))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "no such file" in result.stderr


def test_plan_human_and_json(run, write_site):
    path = write_site(BASE_SITE)
    human = run("plan", str(path))
    assert human.exit_code == 0
    assert "192.168.10.2 *" in human.stdout  # n3's allocated address is marked
    assert "plan --write" in human.stdout
    data = json.loads(run("plan", "--json", str(path)).stdout)
    assert data["moosefs"]["master"] == "n1" and data["moosefs"]["metaloggers"] == ["n2", "n3"]
    assert data["opennebula"]["hosts"] == ["n1", "n2", "n3"]
    n3 = next(n for n in data["nodes"] if n["hostname"] == "n3")
    assert n3 == {**n3, "ip": "192.168.10.2", "ip_allocated": True, "boot": "uefi"}


def test_plan_write_pins_and_is_idempotent(run, write_site):
    path = write_site(BASE_SITE)
    first = run("plan", "--write", str(path))
    assert first.exit_code == 0 and "wrote addresses of n3" in first.stderr
    assert "    ip: 192.168.10.2\n" in path.read_text()
    before = path.read_text()
    second = run("plan", "--write", str(path))
    assert "nothing written" in second.stderr and path.read_text() == before


def test_plan_of_invalid_site_writes_nothing(run, write_site):
    path = write_site(BASE_SITE.replace("goal: 2", "goal: 4"))
    before = path.read_text()
    assert run("plan", "--write", str(path)).exit_code == 1
    assert path.read_text() == before


def test_init_and_profiles(run, tmp_path):
    listing = run("profiles")
    assert [line.split()[0] for line in listing.stdout.splitlines()] == ["five-node", "lab", "single-node", "three-node"]
    target = tmp_path / "site"
    assert run("init", "--profile", "three-node", str(target)).exit_code == 0
    assert run("validate", str(target / "site.yml")).exit_code == 0
    (target / "site.yml").write_text("mine")
    again = run("init", "--profile", "three-node", str(target))
    assert again.exit_code == 1 and "already exists" in again.stderr
    assert (target / "site.yml").read_text() == "mine"
    assert run("init", "--profile", "three-node", "--force", str(target)).exit_code == 0
    assert (target / "site.yml").read_text().startswith("# Three hyperconverged")


def test_init_unknown_profile_suggests(run, tmp_path):
    result = run("init", "--profile", "tree-node", str(tmp_path / "x"))
    assert result.exit_code == 1 and "did you mean 'three-node'" in result.stderr
    assert not (tmp_path / "x").exists()


def test_hash_password_prompts_twice_and_prints_a_hash(run):
    result = CliRunner().invoke(cli, ["hash-password"], input="s3cret pass\ns3cret pass\n")
    assert result.exit_code == 0
    hashed = result.stdout.strip()
    assert hashed.startswith("$6$") and verify("s3cret pass", hashed)
    assert "s3cret" not in result.output


def test_hash_password_mismatch_asks_again(run):
    result = CliRunner().invoke(cli, ["hash-password"], input="one\ntwo\nthree\nthree\n")
    assert result.exit_code == 0 and verify("three", result.stdout.strip().splitlines()[-1])


def test_hash_matches_openssl():
    """The same password and salt give the same hash as an independent implementation."""
    from installer.passwords import crypt

    ours = crypt("Dijon 2026!", "$6$abcdefgh12345678$")
    theirs = subprocess.run(["openssl", "passwd", "-6", "-salt", "abcdefgh12345678", "Dijon 2026!"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert ours == theirs


def test_debug_shows_traceback(tmp_path):
    path = tmp_path / "missing.yml"
    env = {**os.environ, "ONEHCI_DEBUG": "1"}
    proc = subprocess.run([sys.executable, "-m", "installer", "validate", str(path)], capture_output=True,
                          text=True, env=env, cwd=REPO)
    assert proc.returncode == 1 and "Traceback" in proc.stderr


def test_python_m_installer_and_help_do_not_import_heavy_modules():
    code = ("import sys; from installer.cli.main import cli\n"
            "try:\n    cli(['--help'])\nexcept SystemExit: pass\n"
            "heavy = [m for m in ('ansible', 'pyone', 'jinja2', 'pydantic', 'ansible_runner') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert "HEAVY []" in proc.stdout, proc.stdout + proc.stderr
    assert "validate" in proc.stdout and "hash-password" in proc.stdout and "discover" in proc.stdout


def test_validate_json_of_a_missing_file_is_still_json(run, tmp_path):
    result = run("validate", "--json", str(tmp_path / "none.yml"))
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["valid"] is False and "no such file" in data["errors"][0]["message"]


def _commands(group, prefix=()):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, (*prefix, name))
        else:
            yield " ".join((*prefix, name)), command


def test_every_verb_that_takes_a_site_takes_a_profile_too():
    takes_site = {name: {p.name for p in command.params} for name, command in _commands(cli)
                  if "site_path" in {p.name for p in command.params}}
    assert len(takes_site) >= 15, sorted(takes_site)
    assert [name for name, params in takes_site.items() if "profile" not in params] == []


def test_a_profile_stands_for_the_site(run):
    result = run("validate", "--profile", "lab")
    assert result.exit_code == 0 and result.stdout.endswith("profiles/lab/site.yml: valid, 3 nodes, 0 warnings\n")
