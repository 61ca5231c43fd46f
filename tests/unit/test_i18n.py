"""onehci in French: every message marked for translation in installer/ has its French text in
installer/locale/fr/, with the same placeholders; a French system gets French, any other English."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir

from installer import i18n
from tests.conftest import BASE_SITE, REPO

PLACEHOLDER = re.compile(r"\{[a-z_0-9]*(?:[:!][^}]*)?\}")
KEYWORDS = {"_": None, "ngettext": (1, 2)}


def marked() -> dict[str, str]:
    """Every message marked in installer/ (msgid -> where), as Babel's extractor reads the source."""
    found = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
            REPO / "installer", keywords=KEYWORDS, directory_filter=lambda d: "roles" not in d):
        # an ngettext() message is filed in a catalog under its singular (its plural is no key there)
        text = message[0] if isinstance(message, tuple) else message
        found.setdefault(text, f"installer/{filename}:{lineno}")
    return found


def test_messages_are_marked():
    assert len(marked()) > 50


def test_every_marked_message_has_a_checked_french_text_with_the_same_placeholders():
    catalog = i18n.read_catalog("fr")
    missing, fuzzy, wrong = [], [], []
    for text, where in sorted(marked().items(), key=lambda kv: kv[1]):
        entry = catalog.get(text)
        if entry is None or not (entry.string if isinstance(entry.string, str) else all(entry.string)):
            missing.append(f"{where}: {text!r}")
            continue
        if entry.fuzzy:
            fuzzy.append(f"{where}: {text!r}")
        english = entry.id if isinstance(entry.id, tuple) else (entry.id,)
        french = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        fields = lambda texts: [set(PLACEHOLDER.findall(t)) for t in texts]  # noqa: E731
        # every French form uses only what English passes, and the plural (or only) form all of it
        if not all(f <= set().union(*fields(english)) for f in fields(french)) or \
                fields(french)[-1] != fields(english)[-1]:
            wrong.append(f"{where}: {english!r} -> {french!r}")
    assert (missing, fuzzy, wrong) == ([], [], [])


def test_no_french_text_is_left_for_a_message_no_longer_in_the_code():
    stale = sorted(set(m.id if isinstance(m.id, str) else m.id[0] for m in i18n.read_catalog("fr") if m.id)
                   - set(marked()))
    assert stale == []


@pytest.mark.parametrize("env, expected", [
    ({"LANG": "fr_FR.UTF-8"}, "fr"), ({"LANG": "en_US.UTF-8", "LC_ALL": "fr_BE.UTF-8"}, "fr"),
    ({"LANG": "fr_FR.UTF-8", "LANGUAGE": "de"}, "en"), ({"LANG": "C.UTF-8"}, "en"), ({}, "en")])
def test_the_language_comes_from_the_system(monkeypatch, env, expected):
    for variable in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    assert i18n.language() == expected


def _validate(path: Path, lang: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")}
    return subprocess.run([sys.executable, "-m", "installer", "validate", str(path)], capture_output=True, text=True,
                          env={**env, "LANG": lang})


def test_a_french_validate_speaks_french_and_an_english_one_english(tmp_path):
    path = tmp_path / "site.yml"
    path.write_text(BASE_SITE.replace("goal: 2", "goal: 0").replace("timezone: Europe/Paris", "timezone: Paris/Nowhere"))
    french, english = _validate(path, "fr_FR.UTF-8"), _validate(path, "en_US.UTF-8")
    assert french.returncode == english.returncode == 1
    assert "nothing was written" in english.stderr and "is not a time zone name" in english.stderr
    assert "rien n'a été écrit" in french.stderr and "n'est pas un nom de fuseau horaire" in french.stderr
    assert "nothing was written" not in french.stderr
    # the same places, field names untouched
    where = lambda text: [line.split(" ")[0:2] for line in text.splitlines()[:-1]]  # noqa: E731
    assert where(french.stderr) == where(english.stderr)


def test_french_plurals_take_the_singular_for_0_and_1_and_the_plural_above(monkeypatch):
    monkeypatch.setenv("LANGUAGE", "fr")
    forms = [i18n.ngettext("{count} error; nothing was written.", "{count} errors; nothing was written.", n)
             .format(count=n) for n in (0, 1, 2)]
    assert forms == ["0 erreur ; rien n'a été écrit.", "1 erreur ; rien n'a été écrit.",
                     "2 erreurs ; rien n'a été écrit."]
