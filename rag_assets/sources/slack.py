"""Slack workspace exports: one document per channel and day.

An export folder holds `channels.json` (a list of objects with `name`), optionally `users.json`, and a
folder per channel of daily files `YYYY-MM-DD.json`, each a JSON list of messages (`ts`, `user` or
`user_profile.real_name`, `text`, optional `thread_ts` and `subtype`).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from rag_assets.sources.document import Document, Failure, LoadResult
from rag_assets.sources.files import (
    FoundFile,
    Unreadable,
    failed,
    failure,
    json_type,
    max_bytes,
    read_json_file,
)
from rag_assets.sources.spec import SourceSpec

CHANNEL_LISTS = ("channels.json", "groups.json", "mpims.json")
USERS_FILE = "users.json"
SKIPPED_SUBTYPES = frozenset({"channel_join", "channel_leave", "group_join", "group_leave"})
_DAY_FILE = re.compile(r"^\d{4}-\d{2}-\d{2}\.json$")
_ENTITY = re.compile(r"<([^<>]+)>")

Users = dict[str, str]


def _export_failure(spec: SourceSpec, root: Path, name: str, reason: str) -> Failure:
    return Failure(spec.name, name, (root / name).as_uri(), reason)


def read_users(spec: SourceSpec, root: Path) -> tuple[Users, list[Failure]]:
    """User id -> display name from `users.json` (real name, else display name, else handle)."""
    path = root / USERS_FILE
    if not path.is_file():
        return {}, []
    data = read_json_file(path, max_bytes(spec))
    if isinstance(data, Unreadable) or not isinstance(data, list):
        reason = data.reason if isinstance(data, Unreadable) else f"expected a JSON list, got {json_type(data)}"
        return {}, [_export_failure(spec, root, USERS_FILE, f"malformed users file: {reason}")]
    users: Users = {}
    for user in data:
        if not isinstance(user, dict) or not isinstance(user.get("id"), str):
            continue
        profile = user.get("profile") if isinstance(user.get("profile"), dict) else {}
        candidates = (user.get("real_name"), profile.get("real_name"), profile.get("display_name"), user.get("name"))
        name = next((c for c in candidates if isinstance(c, str) and c.strip()), None)
        if name:
            users[user["id"]] = name.strip()
    return users, []


def channel_names(spec: SourceSpec, root: Path) -> tuple[list[str], list[Failure]]:
    """Channel folder names from `channels.json` (and `groups.json`, `mpims.json`); without any of
    those files, every non-hidden subfolder."""
    names: list[str] = []
    failures: list[Failure] = []
    listed = [root / name for name in CHANNEL_LISTS if (root / name).is_file()]
    for path in listed:
        data = read_json_file(path, max_bytes(spec))
        if isinstance(data, Unreadable) or not isinstance(data, list):
            reason = data.reason if isinstance(data, Unreadable) else f"expected a JSON list, got {json_type(data)}"
            failures.append(_export_failure(spec, root, path.name, f"malformed channel list: {reason}"))
            continue
        names.extend(c["name"] for c in data if isinstance(c, dict) and isinstance(c.get("name"), str))
    if not names:
        names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    return list(dict.fromkeys(names)), failures


def _timestamp(message: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(message["ts"]), tz=timezone.utc)
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        return None


def _author(message: dict[str, Any], users: Users) -> str:
    profile = message.get("user_profile")
    candidates = (
        profile.get("real_name") if isinstance(profile, dict) else None,
        users.get(message.get("user") or ""),
        message.get("username"),
        message.get("user"),
    )
    return next((c for c in candidates if isinstance(c, str) and c.strip()), "unknown")


def slack_to_markdown(text: str, users: Users) -> str:
    """Slack mrkdwn entities made readable: `<@U1>` -> `@name`, `<#C1|x>` -> `#x`, `<url|label>` ->
    `label (url)`, `<!here>` -> `@here`; HTML escapes undone."""

    def entity(match: re.Match[str]) -> str:
        target, _, label = match.group(1).partition("|")
        if target.startswith("@"):
            return "@" + (label or users.get(target[1:], target[1:]))
        if target.startswith("#"):
            return "#" + (label or target[1:])
        if target.startswith("!"):
            return "@" + (label or target[1:].split("^")[0])
        return f"{label} ({target})" if label and label != target else target

    return html.unescape(_ENTITY.sub(entity, text))


def _message_line(message: dict[str, Any], users: Users) -> str | None:
    """`**user** (HH:MM): text`, or None for a message with nothing to show."""
    text = slack_to_markdown(message.get("text") or "", users).strip()
    files = [f.get("name") or f.get("title") for f in message.get("files") or [] if isinstance(f, dict)]
    if files:
        text = " ".join(filter(None, [text, *(f"[file: {name}]" for name in files if name)]))
    if not text:
        return None
    when = _timestamp(message)
    clock = when.strftime("%H:%M") if when else "--:--"
    return f"**{_author(message, users)}** ({clock}): {text}"


def day_markdown(messages: list[dict[str, Any]], users: Users) -> str:
    """A day's messages in time order, thread replies quoted under their parent when it is the same day."""
    kept = [m for m in messages if m.get("subtype") not in SKIPPED_SUBTYPES]
    kept.sort(key=lambda m: float(m["ts"]) if _timestamp(m) else 0.0)
    own_ts = {m.get("ts") for m in kept}
    replies: dict[str, list[dict[str, Any]]] = {}
    top: list[dict[str, Any]] = []
    for message in kept:
        parent = message.get("thread_ts")
        if parent and parent != message.get("ts") and parent in own_ts:
            replies.setdefault(parent, []).append(message)
        else:
            top.append(message)
    blocks: list[str] = []
    for message in top:
        line = _message_line(message, users)
        thread = [r for r in (_message_line(m, users) for m in replies.get(message.get("ts"), [])) if r]
        quoted = ["> " + r.replace("\n", "\n> ") for r in thread]
        block = "\n".join(filter(None, [line, *quoted]))
        if block:
            blocks.append(block)
    return "\n\n".join(blocks)


def load_day(spec: SourceSpec, found: FoundFile, channel: str, users: Users) -> LoadResult:
    """One channel-day file as one document (no document for a day with only joins and leaves)."""
    data = read_json_file(found.path, max_bytes(spec))
    if isinstance(data, Unreadable):
        return failed(spec, found, f"malformed day file: {data.reason}")
    if not isinstance(data, list):
        return failed(spec, found, f"malformed day file: expected a JSON list of messages, got {json_type(data)}")
    messages = [m for m in data if isinstance(m, dict)]
    text = day_markdown(messages, users)
    if not text:
        return LoadResult()
    times = [t for t in map(_timestamp, messages) if t]
    day = found.path.stem
    document = Document(
        source=spec.name,
        locator=found.locator,
        link=found.link,
        title=f"#{channel} {day}",
        text=text,
        updated_at=max(times) if times else found.updated_at,
    )
    return LoadResult(documents=[document])


def _safely(spec: SourceSpec, found: FoundFile, load: Callable[[], LoadResult]) -> LoadResult:
    try:
        return load()
    except Exception as exc:  # noqa: BLE001 - the safety net: one bad day never fails the export
        return LoadResult(failures=[failure(spec, found, f"unexpected error: {type(exc).__name__}: {exc}")])


def load_export(spec: SourceSpec, root: Path) -> LoadResult:
    """Every channel-day of one export folder."""
    users, user_failures = read_users(spec, root)
    channels, channel_failures = channel_names(spec, root)
    result = LoadResult(failures=user_failures + channel_failures)
    for channel in channels:
        folder = root / channel
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.is_file() and _DAY_FILE.match(path.name):
                found = FoundFile(path=path, locator=f"{channel}/{path.stem}")
                result.extend(_safely(spec, found, partial(load_day, spec, found, channel, users)))
    return result


def load_slack(spec: SourceSpec, base_dir: Path) -> LoadResult:
    """The "slack" kind: each configured path is an export folder."""
    result = LoadResult()
    for configured, root in zip(spec.paths, spec.resolved_paths(base_dir), strict=True):
        if root.is_dir():
            result.extend(load_export(spec, root))
        else:
            reason = f"not a Slack export folder: {root}" if root.exists() else f"path not found: {root}"
            result.failures.append(Failure(spec.name, configured, str(root), reason))
    return result
