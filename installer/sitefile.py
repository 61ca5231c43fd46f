"""Reading site.yml: YAML with line numbers, the model, the cross-field checks, and
every problem reported at once as FILE:LINE dotted.field: message.

Also writes allocated addresses back into the file, keeping comments and order.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from installer import yamlpos
from installer.errors import OnehciError, Problem, SiteInvalid, printable
from installer.i18n import _, ngettext

Loc = tuple[Any, ...]

# Keys a technician might write instead of a hash; refused with a pointer to hash-password.
_PLAINTEXT_KEYS = {"password", "root_password", "root_pass", "passwd", "root_passwd"}


def dotted(loc: Loc) -> str:
    """('nodes', 2, 'mac') -> 'nodes[2].mac'"""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


@dataclass
class LoadedSite:
    """A site that passed validation, with its warnings and where its lines are."""

    path: Path
    site: Any  # installer.site.Site
    locator: yamlpos.Parsed
    warnings: list[Problem] = field(default_factory=list)


MAX_SIZE = 4 * 1024 * 1024  # bytes: a 1,000-node site is about 300 KB


def read_text(path: Path) -> str:
    """A site file's text: a regular file (a link to one is followed), of a sane size, UTF-8;
    anything else is one clear line (a FIFO would hang, /dev/zero would fill the memory)."""
    name = printable(str(path))  # every message starts with "NAME: " (validate --json takes it off)
    try:
        # O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise OnehciError(_("{file}: no such file (create one with `onehci init --profile NAME DIR`)")
                          .format(file=name)) from None
    except IsADirectoryError:
        raise OnehciError(_("{file}: is a directory, not a site file").format(file=name)) from None
    except PermissionError:
        raise OnehciError(_("{file}: permission denied").format(file=name)) from None
    except OSError as exc:  # a loop of symbolic links, a name too long...
        raise OnehciError(_("{file}: cannot be opened: {reason}").format(file=name, reason=exc.strerror)) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        if stat.S_ISDIR(info.st_mode):
            raise OnehciError(_("{file}: is a directory, not a site file").format(file=name))
        raise OnehciError(_("{file}: is not a regular file (a device, a FIFO or a socket), not a site file")
                          .format(file=name))
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(MAX_SIZE + 1)
    if len(data) > MAX_SIZE:
        raise OnehciError(_("{file}: larger than {size} MiB: not a site file").format(
            file=name, size=MAX_SIZE // (1024 * 1024)))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise OnehciError(_("{file}: not UTF-8 text (byte {offset})").format(file=name, offset=exc.start)) from None


def read_yaml(path: Path) -> yamlpos.Parsed:
    """Parse a site file's YAML, keeping lines, or raise a clear error."""
    name = str(path)
    text = read_text(path)
    try:
        parsed = yamlpos.parse(text)
    except yamlpos.YamlError as exc:
        # the parser's own words (exc.message) stay in English
        msg = (_("YAML syntax error column {column}: {message}") if exc.column else
               _("YAML syntax error: {message}")).format(column=exc.column, message=exc.message)
        raise SiteInvalid([Problem(name, exc.line, "", msg)]) from None
    if not isinstance(parsed.data, dict):
        raise SiteInvalid([Problem(name, parsed.line(()) or 1, "",
                                   _("a site file is a YAML mapping starting with 'format: 1'"))])
    return parsed


def load(path: str | Path) -> LoadedSite:
    """Load and validate a site file; raise SiteInvalid listing every error and warning."""
    from pydantic import ValidationError

    from installer import checks
    from installer.site import Site

    path = Path(path)
    locator = read_yaml(path)
    data = locator.data
    if "format" not in data and not set(map(str, data)) & set(Site.model_fields):
        # another kind of file (a mistyped path, a link to /etc/passwd): one line, none of its content
        raise SiteInvalid([Problem(str(path), 1, "", _("not a site file: it has no 'format: 1' and none of a "
                                                       "site's sections (cluster, networks, bootstrap, access, "
                                                       "nodes...)"))])
    if data.get("format") not in (None, 1) and isinstance(data.get("format"), int):
        raise SiteInvalid([Problem(str(path), locator.line(("format",)), "format",
                                   _("unknown format {value}; this onehci reads format 1").format(
                                       value=data["format"]))])
    try:
        site = Site.model_validate(data)
    except ValidationError as exc:
        found = [(err, _from_pydantic(err, str(path), locator, data)) for err in exc.errors()]
        raise SiteInvalid(_dedupe(found, data)) from None
    problems = [Problem(str(path), locator.line(loc), dotted(loc), message, severity)
                for loc, message, severity in checks.check(site, locator.line)]
    if any(p.severity == "error" for p in problems):
        raise SiteInvalid(problems)
    return LoadedSite(path, site, locator, problems)


def _dedupe(found: list[tuple[dict, Problem]], data: Any) -> list[Problem]:
    """Drop repeats, and the "missing" error of a field whose misspelling was already
    reported with a suggestion (one typo, one message). FOUND: pydantic's errors with their
    problems (read from the errors, not the messages: those are translated)."""
    suggested = set()
    for err, _problem in found:
        if err["type"] == "extra_forbidden":
            loc = _user_loc(err["loc"], data)
            close = _misspelled(loc)
            if close:
                suggested.add(dotted(loc[:-1] + (close,)))
    seen, out = set(), []
    for err, p in found:
        if err["type"] == "missing" and p.field in suggested:
            continue
        if (p.line, p.field, p.message) not in seen:
            seen.add((p.line, p.field, p.message))
            out.append(p)
    return out


def _known_fields(loc: Loc) -> list[str]:
    """The field names the model accepts at the mapping holding `loc`."""
    from installer import site as model

    cls: Any = model.Site
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        info = cls.model_fields.get(part) if hasattr(cls, "model_fields") else None
        if info is None:
            return []
        cls = _model_in(info.annotation)
        if cls is None:
            return []
    return list(getattr(cls, "model_fields", {}))


def _model_in(annotation: Any) -> Any:
    from typing import get_args

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _is_plaintext_password(key: str) -> bool:
    return key.lower() in _PLAINTEXT_KEYS or ("password" in key.lower() and "hash" not in key.lower())


def _misspelled(loc: Loc) -> str | None:
    """The known field an unknown key at LOC is a misspelling of, if one is close."""
    key = str(loc[-1])
    if _is_plaintext_password(key):
        return None
    close = difflib.get_close_matches(key, _known_fields(loc), n=1, cutoff=0.6)
    return close[0] if close else None


def _from_pydantic(err: dict, file: str, locator: yamlpos.Parsed, data: Any) -> Problem:
    loc = _user_loc(err["loc"], data)
    kind, value = err["type"], err.get("input")
    field_name = dotted(loc)
    if kind == "extra_forbidden":
        key = str(loc[-1])
        if _is_plaintext_password(key):
            msg = _("plaintext passwords are not accepted; run `onehci hash-password` and put its output in "
                    "access.root_password_hash")
        else:
            close = _misspelled(loc)
            shown = key if len(key) <= 40 else key[:40] + "..."
            msg = (_("unknown field '{key}'; did you mean '{close}'?") if close else
                   _("unknown field '{key}'")).format(key=shown, close=close)
            field_name = dotted(loc[:-1] + (shown,))
        return Problem(file, locator.line(loc), field_name, msg)
    if kind == "missing":
        return Problem(file, locator.line(loc), field_name, _("required field is missing"))
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        if loc == ("format",):
            msg = _("unknown format {value}; this onehci reads format 1").format(value=repr(value))
        else:
            msg = _("{value} is not one of {choices}").format(value=repr(value), choices=_choices(expected))
        return Problem(file, locator.line(loc), field_name, msg)
    if kind == "value_error":
        msg = str(err.get("ctx", {}).get("error", err["msg"]))  # onehci's own validators: already translated
        return Problem(file, locator.line(loc), field_name, msg)
    if kind in ("too_short", "list_type") and isinstance(value, list) and not value:
        return Problem(file, locator.line(loc), field_name, _("must not be empty"))
    if kind.endswith("_type") or kind in ("model_type", "model_attributes_type"):
        expected = {"int_type": _("a whole number"), "string_type": _("text"), "bool_type": _("true or false"),
                    "list_type": _("a list"), "model_type": _("a mapping"), "dict_type": _("a mapping"),
                    "float_type": _("a number")}.get(kind, kind.replace("_type", ""))
        return Problem(file, locator.line(loc), field_name,
                       _("expected {expected}, got {found}").format(expected=expected, found=_shown(value)))
    return Problem(file, locator.line(loc), field_name, _pydantic_message(err))


def _choices(expected: str) -> str:
    """Pydantic's list of allowed values ("'a', 'b' or 'c'") with its "or" translated."""
    items = re.findall(r"'[^']*'|-?\d+", expected)
    if len(items) < 2 or f"{', '.join(items[:-1])} or {items[-1]}" != expected:
        return expected  # not the form expected: shown as pydantic wrote it
    return _("{choices} or {last}").format(choices=", ".join(items[:-1]), last=items[-1])


def _pydantic_message(err: dict) -> str:
    """Pydantic's message for a constraint of the model, as onehci shows it (lower case first):
    the English is pydantic's own, word for word; the kinds not listed here are shown as pydantic
    wrote them."""
    kind, ctx = err["type"], {k: _number(v) for k, v in (err.get("ctx") or {}).items()}
    if kind == "string_too_short":
        text = ngettext("string should have at least {min_length} character",
                        "string should have at least {min_length} characters", ctx["min_length"])
    elif kind == "string_too_long":
        text = ngettext("string should have at most {max_length} character",
                        "string should have at most {max_length} characters", ctx["max_length"])
    elif kind == "too_short" and ctx.get("field_type") == "List":
        text = ngettext("list should have at least {min_length} item after validation, not {actual_length}",
                        "list should have at least {min_length} items after validation, not {actual_length}",
                        ctx["min_length"])
    elif kind == "too_long" and ctx.get("field_type") == "List":
        text = ngettext("list should have at most {max_length} item after validation, not {actual_length}",
                        "list should have at most {max_length} items after validation, not {actual_length}",
                        ctx["max_length"])
    else:
        text = {"greater_than": _("input should be greater than {gt}"),
                "greater_than_equal": _("input should be greater than or equal to {ge}"),
                "less_than": _("input should be less than {lt}"),
                "less_than_equal": _("input should be less than or equal to {le}"),
                "multiple_of": _("input should be a multiple of {multiple_of}"),
                "finite_number": _("input should be a finite number"),
                "string_pattern_mismatch": _("string should match pattern '{pattern}'")}.get(kind)
    if text is None:
        return err["msg"][0].lower() + err["msg"][1:]
    return text.format(**ctx)


def _number(value: Any) -> Any:
    """A bound as pydantic writes it in its messages: 30.0 as 30."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _user_loc(raw: Loc, data: Any) -> Loc:
    """Pydantic's location without its own markers (union branches, validator names):
    keep the parts that exist in the document, and a final missing field name."""
    loc: list = []
    node = data
    for i, part in enumerate(raw):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif isinstance(node, dict) and i == len(raw) - 1:
            pass  # a required field that is missing
        else:
            continue
        loc.append(part)
    return tuple(loc)


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return f"{str(value).lower()} (true/false)"  # YAML's words: not translated
    if isinstance(value, (int, float)):
        return _("{value} (a number)").format(value=value)
    if isinstance(value, str):
        return _("'{value}' (text)").format(value=value[:40])
    if value is None:
        return _("nothing")
    return {dict: _("a mapping"), list: _("a list")}.get(type(value), type(value).__name__)


def write_addresses(path: Path, addresses: dict[str, str]) -> list[str]:
    """Pin allocated addresses: add `ip: X` after the `mac:` value of each named node that has
    none. The rest of the file is kept byte for byte (comments, order, quoting, line endings).
    Returns the hostnames written. The new text must load as the same site with the addresses
    pinned before it replaces the file, atomically; a symbolic link named as the site file
    stays a link (its target is rewritten)."""
    import tempfile

    target = path.resolve()
    text = read_text(path)
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines(keepends=True)
    parsed = yamlpos.parse(text)
    replace: dict[int, str] = {}  # 0-based line -> its new text
    insert: dict[int, str] = {}  # 0-based line -> text inserted before it
    written = []
    for i, node in enumerate(parsed.data.get("nodes") or []):
        name = node.get("hostname") if isinstance(node, dict) else None
        if name not in addresses or node.get("ip"):
            continue
        mapping = parsed.nodes[("nodes", i)]
        if mapping.flow_style:
            raise OnehciError(_("{file}: node {node} is written on one line ({{...}}); add 'ip: {address}' to it by "
                                "hand").format(file=path, node=name, address=addresses[name]))
        keys = {k.value: (k, v) for k, v in mapping.value if hasattr(k, "value")}
        if "ip" in keys:  # `ip:` present but empty: fill it in, keeping any comment
            row, col = keys["ip"][0].start_mark.line, keys["ip"][0].start_mark.column
            comment = lines[row][lines[row].find("#"):].rstrip("\r\n") if "#" in lines[row] else ""
            replace[row] = f"{' ' * col}ip: {addresses[name]}" + (f"  {comment}" if comment else "") + newline
        else:
            key, value = keys["mac"]
            end = value.end_mark  # after the value, wherever it ends (next line, block scalar)
            row = end.line if end.column == 0 else end.line + 1
            insert[row] = insert.get(row, "") + f"{' ' * key.start_mark.column}ip: {addresses[name]}{newline}"
        written.append(name)
    if not written:
        return []
    if lines and not lines[-1].endswith(("\n", "\r")) and len(lines) in insert:
        lines[-1] += newline
    new_text = "".join(insert.get(i, "") + replace.get(i, line) for i, line in enumerate(lines)) + insert.get(len(lines), "")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(new_text)
        _check_pinned(Path(tmp), path, {n: addresses[n] for n in written})
        os.chmod(tmp, target.stat().st_mode & 0o7777)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return written


def _check_pinned(candidate: Path, path: Path, pinned: dict[str, str]) -> None:
    """The rewritten text must still be a valid site whose nodes now carry the pinned addresses."""
    try:
        site = load(candidate).site
    except OnehciError as exc:
        raise OnehciError(_("{file}: adding the addresses would not give a valid site file ({reason}); the file was "
                            "not changed: add the ip: lines by hand").format(file=path, reason=exc)) from None
    found = {n.hostname: str(n.ip) for n in site.nodes if n.hostname in pinned}
    if found != pinned:
        raise OnehciError(_("{file}: adding the addresses did not pin them as planned; the file was not changed: "
                            "add the ip: lines by hand").format(file=path))
