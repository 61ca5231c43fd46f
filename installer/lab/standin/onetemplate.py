"""OpenNebula templates for the onehci stand-in daemon: parsing and XML.

A template is a list of (NAME, value) pairs, in the order given; a value is a string
or, for a vector attribute, a list of (NAME, string) pairs. Names are upper-cased, as
OpenNebula does. Standard library only: this module ships in the stand-in package.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

Value = str | list[tuple[str, str]]
Template = list[tuple[str, Value]]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
# unquoted values stop at blanks, separators, brackets and comments, as in OpenNebula's lexer
_BARE = re.compile(r"[^\s,\[\]\"#=]+")


class TemplateError(ValueError):
    """The text is not a template; the message reads like OpenNebula's parser."""


def parse(text: str) -> Template:
    """Template syntax (KEY = "v", KEY = v, KEY = [ A = "x", B = y ]) or XML, as
    OpenNebula's parse_str_or_xml decides: XML when the text starts with '<'."""
    if text.lstrip().startswith("<"):
        return _parse_xml(text)
    return _Parser(text).template()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def _where(self) -> str:
        line = self.text.count("\n", 0, self.pos) + 1
        col = self.pos - (self.text.rfind("\n", 0, self.pos) + 1) + 1
        return f"at line {line}, column {col}"

    def _fail(self, what: str) -> TemplateError:
        found = self.text[self.pos:self.pos + 12].split("\n")[0] or "end of input"
        return TemplateError(f"Parse error: syntax error, unexpected '{found}', "
                             f"expecting {what} {self._where()}")

    def _skip(self, newlines: bool = True) -> None:
        blanks = " \t\r\n" if newlines else " \t\r"
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in blanks:
                self.pos += 1
            elif char == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                return

    def _name(self) -> str:
        match = _NAME.match(self.text, self.pos)
        if not match:
            raise self._fail("an attribute name")
        self.pos = match.end()
        return match.group().upper()

    def _equal(self) -> None:
        self._skip()
        if not self.text.startswith("=", self.pos):
            raise self._fail("'='")
        self.pos += 1
        self._skip()

    def _scalar(self) -> str:
        if self.text.startswith('"', self.pos):
            return self._quoted()
        match = _BARE.match(self.text, self.pos)
        if not match:
            raise self._fail("a value")
        self.pos = match.end()
        return match.group()

    def _quoted(self) -> str:
        out = []
        self.pos += 1
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text) and self.text[self.pos + 1] in '"\\':
                out.append(self.text[self.pos + 1])
                self.pos += 2
            elif char == '"':
                self.pos += 1
                return "".join(out)
            else:
                out.append(char)
                self.pos += 1
        raise self._fail('a closing \'"\'')

    def _vector(self) -> list[tuple[str, str]]:
        self.pos += 1
        pairs: list[tuple[str, str]] = []
        while True:
            self._skip()
            if self.text.startswith("]", self.pos):
                self.pos += 1
                return pairs
            if pairs:
                if not self.text.startswith(",", self.pos):
                    raise self._fail("',' or ']'")
                self.pos += 1
                self._skip()
            name = self._name()
            self._equal()
            if self.text.startswith("[", self.pos):
                raise self._fail("a value (vectors do not nest)")
            pairs.append((name, self._scalar()))

    def template(self) -> Template:
        attrs: Template = []
        while True:
            self._skip()
            if self.pos >= len(self.text):
                return attrs
            name = self._name()
            self._equal()
            if self.text.startswith("[", self.pos):
                attrs.append((name, self._vector()))
            else:
                attrs.append((name, self._scalar()))


def _parse_xml(text: str) -> Template:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as err:
        raise TemplateError(f"Parse error: XML {err}") from None
    attrs: Template = []
    for child in root:
        if len(child):
            attrs.append((child.tag.upper(), [(sub.tag.upper(), sub.text or "") for sub in child]))
        else:
            attrs.append((child.tag.upper(), child.text or ""))
    return attrs


# --- operations with OpenNebula's semantics ------------------------------------------


def get(tmpl: Template, name: str) -> Value | None:
    return next((value for key, value in tmpl if key == name), None)


def get_str(tmpl: Template, name: str) -> str:
    """A single attribute's value; "" when missing or a vector."""
    value = get(tmpl, name)
    return value if isinstance(value, str) else ""


def erase(tmpl: Template, name: str) -> Value | None:
    """Remove every attribute NAME; return the first value."""
    first = get(tmpl, name)
    tmpl[:] = [(key, value) for key, value in tmpl if key != name]
    return first


def replace(tmpl: Template, name: str, value: Value) -> None:
    erase(tmpl, name)
    tmpl.append((name, value))


def vectors(tmpl: Template, name: str) -> list[list[tuple[str, str]]]:
    return [value for key, value in tmpl if key == name and isinstance(value, list)]


def merge(tmpl: Template, other: Template) -> None:
    """Template::merge: every name present in OTHER replaces all attributes of that name."""
    names = {key for key, _ in other}
    tmpl[:] = [(key, value) for key, value in tmpl if key not in names] + list(other)


def vget(vector: list[tuple[str, str]], name: str) -> str:
    return next((value for key, value in vector if key == name), "")


def vreplace(vector: list[tuple[str, str]], name: str, value: str) -> None:
    vector[:] = [(key, val) for key, val in vector if key != name] + [(name, value)]


# --- XML ---------------------------------------------------------------------------


def cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def to_xml(tmpl: Template, root: str = "TEMPLATE") -> str:
    """Attributes sorted by name (stable), values in CDATA, as OpenNebula's
    Template::to_xml writes them."""
    parts = [f"<{root}>"]
    for name, value in sorted(tmpl, key=lambda pair: pair[0]):
        if isinstance(value, list):
            inner = "".join(f"<{sub}>{cdata(text)}</{sub}>"
                            for sub, text in sorted(value, key=lambda pair: pair[0]))
            parts.append(f"<{name}>{inner}</{name}>")
        else:
            parts.append(f"<{name}>{cdata(value)}</{name}>")
    parts.append(f"</{root}>")
    return "".join(parts)


def to_json(tmpl: Template) -> list:
    return [[name, [list(pair) for pair in value] if isinstance(value, list) else value]
            for name, value in tmpl]


def from_json(data: list) -> Template:
    return [(name, [tuple(pair) for pair in value] if isinstance(value, list) else value)
            for name, value in data]
