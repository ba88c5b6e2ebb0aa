"""GitHub issues exports in the REST API JSON shape: one document per issue, with its comments.

An export file is a JSON list of issue objects (`number`, `title`, `body`, `html_url`, `updated_at`,
`user.login`, `state`, `labels`, optionally `pull_request`). Comments are embedded per issue under
`comments_data` or `comment_list`, or sit in a sibling `comments.json` (REST comment objects whose
`issue_url` ends in `/issues/N`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from rag_assets.sources.document import Document, Failure, LoadResult
from rag_assets.sources.files import (
    FoundFile,
    Unreadable,
    failed,
    json_type,
    load_walked,
    max_bytes,
    parse_json,
    read_json_file,
    read_text_file,
)
from rag_assets.sources.spec import SourceSpec

DEFAULT_INCLUDE = ["*.json"]
COMMENTS_FILE = "comments.json"
EMBEDDED_COMMENT_KEYS = ("comments_data", "comment_list")
_ISSUE_URL = re.compile(r"/issues/(\d+)/?$")

Comments = dict[int, list[dict[str, Any]]]


def _login(obj: dict[str, Any]) -> str:
    user = obj.get("user")
    login = user.get("login") if isinstance(user, dict) else None
    return login if isinstance(login, str) and login else "unknown"


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _markdown(value: Any) -> str:
    return value.replace("\r\n", "\n").strip() if isinstance(value, str) else ""


def _label_names(labels: Any) -> list[str]:
    if not isinstance(labels, list):
        return []
    names = (label.get("name") if isinstance(label, dict) else label for label in labels)
    return [name for name in names if isinstance(name, str) and name]


def issue_problem(item: Any) -> str | None:
    """Why an export item is not an issue object, else None."""
    if not isinstance(item, dict):
        return f"expected an object, got {json_type(item)}"
    number = item.get("number")
    if number is None:
        return "missing 'number'"
    if not isinstance(number, int) or isinstance(number, bool):
        return f"'number' is not an integer: {number!r}"
    if not isinstance(item.get("title"), str):
        return "missing 'title'"
    return None


def issue_title(issue: dict[str, Any]) -> str:
    """`#N title`."""
    return f"#{issue['number']} {issue['title'].strip()}".strip()


def group_comments(items: list[Any]) -> tuple[Comments, int]:
    """REST comment objects grouped by issue number (from `issue_url`), and how many were unusable."""
    grouped: Comments = defaultdict(list)
    skipped = 0
    for item in items:
        url = item.get("issue_url") if isinstance(item, dict) else None
        match = _ISSUE_URL.search(url) if isinstance(url, str) else None
        if match is None:
            skipped += 1
            continue
        grouped[int(match.group(1))].append(item)
    return dict(grouped), skipped


def _sibling_comments(spec: SourceSpec, found: FoundFile) -> tuple[Comments, list[Failure]]:
    """Comments from `comments.json` next to the export, if there is one."""
    path = found.path.with_name(COMMENTS_FILE)
    if not path.is_file():
        return {}, []
    locator = str(PurePosixPath(found.locator).with_name(COMMENTS_FILE))

    def fail(reason: str) -> list[Failure]:
        return [Failure(spec.name, locator, path.as_uri(), reason)]

    data = read_json_file(path, max_bytes(spec))
    if isinstance(data, Unreadable):
        return {}, fail(f"malformed comments: {data.reason}")
    if not isinstance(data, list):
        return {}, fail(f"malformed comments: expected a JSON list, got {json_type(data)}")
    grouped, skipped = group_comments(data)
    return grouped, fail(f"malformed comments: {skipped} item(s) without an issue_url") if skipped else []


def format_comment(comment: dict[str, Any]) -> str:
    """`### Comment by @login (YYYY-MM-DD)` and the comment body."""
    created = _parse_time(comment.get("created_at"))
    when = f" ({created.date().isoformat()})" if created else ""
    return f"### Comment by @{_login(comment)}{when}\n\n{_markdown(comment.get('body'))}".rstrip()


def issue_markdown(issue: dict[str, Any], comments: list[dict[str, Any]]) -> str:
    """The issue as Markdown: a heading, a metadata line, the body, then each comment in time order."""
    kind = "Pull request" if issue.get("pull_request") else "Issue"
    meta = [f"{kind} by @{_login(issue)}"]
    if isinstance(issue.get("state"), str):
        meta.append(issue["state"])
    labels = _label_names(issue.get("labels"))
    if labels:
        meta.append("labels: " + ", ".join(labels))
    parts = [f"# {issue_title(issue)}", f"*{' · '.join(meta)}*"]
    body = _markdown(issue.get("body"))
    if body:
        parts.append(body)
    ordered = sorted(
        (c for c in comments if isinstance(c, dict)), key=lambda c: str(c.get("created_at") or "")
    )
    parts.extend(format_comment(comment) for comment in ordered)
    return "\n\n".join(parts)


def _embedded_comments(issue: dict[str, Any]) -> list[dict[str, Any]] | None:
    for key in EMBEDDED_COMMENT_KEYS:
        if isinstance(issue.get(key), list):
            return issue[key]
    return None


def parse_export(spec: SourceSpec, found: FoundFile, data: Any, sibling: Comments) -> LoadResult:
    """Documents for the valid issues of an export, and a failure per bad item (or for a bad file)."""
    if not isinstance(data, list):
        got = json_type(data)
        return failed(spec, found, f"malformed export: expected a JSON list of issues, got {got}")
    problems = [issue_problem(item) for item in data]
    if data and all(problems):
        return failed(spec, found, f"malformed export: no GitHub issue objects ({problems[0]} at index 0)")
    result = LoadResult()
    for index, (item, problem) in enumerate(zip(data, problems, strict=True)):
        if problem:
            locator = f"{found.locator}[{index}]"
            reason = f"malformed issue at index {index}: {problem}"
            result.failures.append(Failure(spec.name, locator, found.link, reason))
            continue
        number = item["number"]
        comments = _embedded_comments(item)
        html_url = item.get("html_url")
        result.documents.append(
            Document(
                source=spec.name,
                locator=f"issues/{number}",
                link=html_url if isinstance(html_url, str) and html_url else found.link,
                title=issue_title(item),
                text=issue_markdown(item, comments if comments is not None else sibling.get(number, [])),
                updated_at=_parse_time(item.get("updated_at")) or found.updated_at,
            )
        )
    return result


def load_issues_file(spec: SourceSpec, found: FoundFile) -> LoadResult:
    """One export file (a sibling `comments.json` is read with it, never loaded on its own)."""
    if found.path.name == COMMENTS_FILE:
        return LoadResult()
    text = read_text_file(found.path, max_bytes(spec))
    if isinstance(text, Unreadable):
        return failed(spec, found, text.reason)
    data = parse_json(text)
    if isinstance(data, Unreadable):
        return failed(spec, found, f"malformed export: {data.reason}")
    sibling, failures = _sibling_comments(spec, found)
    result = parse_export(spec, found, data, sibling)
    result.failures.extend(failures)
    return result


def load_github_issues(spec: SourceSpec, base_dir: Path) -> LoadResult:
    """The "github_issues" kind: every export file under the spec's paths."""
    return load_walked(spec, base_dir, DEFAULT_INCLUDE, load_issues_file)
