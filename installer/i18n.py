"""onehci in the technician's language: English unless the system's language is French
(LANGUAGE, LC_ALL, LC_MESSAGES or LANG, the first one set, as gettext reads them).

Messages are marked with `_()` where they are written, with `{name}` placeholders filled after
the translation (`_("{node} is down").format(node=...)`), so a translator can move them. The
catalogs are the .po files in installer/locale/LANG/ (one per part of onehci, merged), read with
Babel when first needed (no compiled file kept in the repository). tests/unit/test_i18n.py fails on any marked message without its
French text.
"""

from __future__ import annotations

import contextlib
import functools
import gettext
import io
import os
import threading
from pathlib import Path

LOCALE_DIR = Path(__file__).with_name("locale")
LANGUAGES = ("fr",)  # the catalogs there are; English is the source
_forced = threading.local()  # .language: set by english() in this thread


def language() -> str:
    """The language of this process's messages: a catalog's language, or 'en'."""
    if getattr(_forced, "language", None):
        return _forced.language
    for variable in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(variable, "")
        if value:
            code = value.split(":")[0].split("_")[0].split(".")[0].lower()
            return code if code in LANGUAGES else "en"
    return "en"


@contextlib.contextmanager
def english():
    """Messages made inside (in this thread) are English whatever the system's language: for
    documents that are English throughout, such as the report's web page."""
    before = getattr(_forced, "language", None)
    _forced.language = "en"
    try:
        yield
    finally:
        _forced.language = before


@functools.lru_cache(maxsize=None)
def translations(lang: str) -> gettext.NullTranslations:
    if lang not in LANGUAGES:
        return gettext.NullTranslations()
    from babel.messages.mofile import write_mo

    catalog = read_catalog(lang)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)  # fuzzy entries left out: an unchecked translation is not shown
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def read_catalog(lang: str):
    """The catalogs of LANG merged into one Babel catalog."""
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import read_po

    merged = Catalog(locale=lang, domain="onehci")
    for path in sorted((LOCALE_DIR / lang).glob("*.po")):
        with open(path, "rb") as po:
            catalog = read_po(po, locale=lang)
        # the plural rule of the .po files' headers (fr: 2 forms), not Babel's own for the
        # language (CLDR's French has 3): with that one, every plural of n >= 2 came out English
        merged.mime_headers = [("Plural-Forms", catalog.plural_forms)]
        for message in catalog:
            if message.id:  # not the header
                merged[message.id] = message
    return merged


def _(message: str) -> str:
    return translations(language()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(language()).ngettext(singular, plural, n)
