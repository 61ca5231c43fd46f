"""The oneadmin password kept on the control machine: created once, 0600, stable."""

from __future__ import annotations

import stat

import pytest

from installer import state
from installer.errors import OnehciError


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.delenv("ONEHCI_STATE_DIR", raising=False)
    path = tmp_path / "site" / "site.yml"
    path.parent.mkdir()
    path.write_text("format: 1\n")
    return path


def test_password_file_lives_in_the_state_secrets(site):
    assert state.oneadmin_password_file(site) == site.parent / "state" / "secrets" / "oneadmin_password"


def test_password_is_created_once_private_and_stable(site):
    path = state.oneadmin_password_file(site)
    assert not path.exists()
    first = state.oneadmin_password(site)
    assert len(first) >= 32 and ":" not in first and "\n" not in first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert state.oneadmin_password(site) == first
    assert path.read_text() == first + "\n"


def test_password_tightens_a_loosened_file_and_is_a_secret_value(site):
    password = state.oneadmin_password(site)
    path = state.oneadmin_password_file(site)
    path.chmod(0o644)
    assert state.oneadmin_password(site) == password
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert password in state.secret_values(state.state_dir(site))


def test_each_site_gets_its_own_password(tmp_path, site):
    other = tmp_path / "other" / "site.yml"
    other.parent.mkdir()
    assert state.oneadmin_password(site) != state.oneadmin_password(other)


def test_an_emptied_password_file_is_refused_not_replaced(site):
    state.oneadmin_password(site)
    state.oneadmin_password_file(site).write_text("")
    with pytest.raises(OnehciError, match="is empty"):
        state.oneadmin_password(site)
    assert state.oneadmin_password_file(site).read_text() == ""


def test_password_honours_the_state_dir_override(tmp_path, site, monkeypatch):
    monkeypatch.setenv("ONEHCI_STATE_DIR", str(tmp_path / "elsewhere"))
    state.oneadmin_password(site)
    assert (tmp_path / "elsewhere" / "secrets" / "oneadmin_password").exists()
