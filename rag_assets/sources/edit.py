"""Edits of a sources file that keep its comments: remove sources and confirm their removal.

The edit is line-based (PyYAML drops comments): the removed entries' lines go, the others stay as
written. The result is parsed back and compared with the intended content; if the file's layout
defeats the line edit (e.g. `sources: [...]` on one line), the file is rewritten from the parsed
content instead, without its comments. Writes are atomic (temporary file + `os.replace`).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

import yaml

from rag_assets.sources.spec import SourcesFile, SourcesFileError, parse_sources, read_sources_file

_ITEM = re.compile(r"^( *)-( |\t|\r?\n|$)")
CONFIRM_COMMENT = "  # removals confirmed for the sources sensor (rag sources remove)"


def remove_sources(path: Path, names: list[str]) -> list[str]:
    """Remove the named sources from the file and list them under `confirm_removal`; returns the names removed.

    `SourcesFileError` if the file is missing or malformed; `KeyError` (naming the declared sources) for a name
    the file does not declare; nothing is written then.
    """
    path = Path(path).resolve()
    current = read_sources_file(path)
    declared = current.specs()
    wanted = list(dict.fromkeys(names))
    unknown = [name for name in wanted if name not in declared]
    if unknown:
        raise KeyError(
            f"{', '.join(map(repr, unknown))} not declared in {path} (declared: {', '.join(declared) or 'none'})"
        )
    expected = SourcesFile(
        sources=[spec for spec in current.sources if spec.name not in wanted],
        confirm_removal=list(dict.fromkeys([*current.confirm_removal, *wanted])),
    )
    text = path.read_text(encoding="utf-8")
    edited = _edit_lines(text, [spec.name for spec in current.sources], set(wanted), expected.confirm_removal)
    if edited is None or _parsed(edited, path) != expected:
        edited = _dump(expected)
    write_atomic(path, edited)
    return wanted


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step: readers see the old file or the new one, never half of it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _parsed(text: str, path: Path) -> SourcesFile | None:
    try:
        return parse_sources(text, path)
    except SourcesFileError:
        return None


def _dump(content: SourcesFile) -> str:
    data = {
        "sources": [spec.model_dump(exclude_defaults=True) for spec in content.sources],
        "confirm_removal": content.confirm_removal,
    }
    header = "# Rewritten by `rag sources remove`: the layout of this file did not allow keeping its comments.\n"
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def _top_key(lines: list[str], key: str, value: bool = False) -> int | None:
    """The line of a top-level `key:` (followed by a value on the same line if `value`)."""
    pattern = re.compile(rf"^{key}:(\s.*)?$" if value else rf"^{key}:\s*(#.*)?$")
    return next((i for i, line in enumerate(lines) if pattern.match(line.rstrip("\r\n"))), None)


def _items(lines: list[str], key: int) -> list[tuple[int, int]] | None:
    """Line ranges [start, end) of the block-list items under the top-level key at line `key`."""
    starts: list[int] = []
    indent, end = None, len(lines)
    for i in range(key + 1, len(lines)):
        line = lines[i]
        if not line.strip() or _is_comment(line):
            continue
        match = _ITEM.match(line)
        if indent is None:
            if not match:
                return None  # not a block list
            indent = len(match.group(1))
        if match and len(match.group(1)) == indent:
            starts.append(i)
        elif _indent(line) <= indent:
            end = i
            break
    if indent is None:
        return []
    ranges = []
    for k, start in enumerate(starts):
        floor = starts[k - 1] + 1 if k else key + 1
        while start - 1 >= floor and _is_comment(lines[start - 1]) and _indent(lines[start - 1]) <= indent:
            start -= 1  # a comment right above an entry belongs to it
        ranges.append(start)
    blocks = []
    for k, start in enumerate(ranges):
        stop = ranges[k + 1] if k + 1 < len(ranges) else end
        if k + 1 == len(ranges):  # blank lines and outdented comments after the last entry stay
            while stop - 1 > starts[k] and (not lines[stop - 1].strip() or (_is_comment(lines[stop - 1]) and _indent(lines[stop - 1]) <= indent)):
                stop -= 1
        blocks.append((start, stop))
    return blocks


def _edit_lines(text: str, order: list[str], remove: set[str], confirmed: list[str]) -> str | None:
    """The text without the removed entries and with the new `confirm_removal`; None if the layout is not line-editable."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    key = _top_key(lines, "sources")
    if key is None:
        return None
    blocks = _items(lines, key)
    if blocks is None or len(blocks) != len(order):
        return None
    drop = {i for (start, stop), name in zip(blocks, order) if name in remove for i in range(start, stop)}
    if len(remove) == len(order):
        comment = lines[key].rstrip("\r\n")[len("sources:"):].strip()
        lines[key] = "sources: []" + (f"  {comment}" if comment else "") + "\n"
    lines = [line for i, line in enumerate(lines) if i not in drop]
    value = yaml.safe_dump(confirmed, default_flow_style=True, width=1 << 20, allow_unicode=True).strip()
    confirm = _top_key(lines, "confirm_removal", value=True)
    if confirm is None:
        lines.append(f"confirm_removal: {value}{CONFIRM_COMMENT}\n")
        return "".join(lines)
    stop = confirm + 1
    while stop < len(lines) and (not lines[stop].strip() or _indent(lines[stop]) > 0 or _ITEM.match(lines[stop])):
        stop += 1
    while stop - 1 > confirm and not lines[stop - 1].strip():
        stop -= 1
    lines[confirm:stop] = [f"confirm_removal: {value}{CONFIRM_COMMENT}\n"]
    return "".join(lines)
