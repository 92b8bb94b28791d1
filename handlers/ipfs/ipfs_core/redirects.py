"""``_redirects`` files (ipfs specs ``src/http-gateways/web-redirects-file.md``).

One rule per line: ``from to [status]``; ``#`` starts a comment. ``from`` is a path that may hold ``:placeholder``
segments and end in a ``*`` splat; ``to`` is a path or an absolute URL that may use ``:placeholder`` and
``:splat``. Status: 301 (the default), 302, 303, 307, 308 (redirects), 200 (rewrite), 404, 410, 451 (that page
with that status); a ``!`` after the status forces the rule even when the path exists. Rules are tried in order,
the first match wins. A file over 64 KiB, or with a line that does not parse, is an error (the gateway answers 500
"could not parse _redirects").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ipfs_core import IpfsError

MAX_SIZE = 64 * 1024
STATUSES = {200, 301, 302, 303, 307, 308, 404, 410, 451}
_PLACEHOLDER = re.compile(r":([A-Za-z_][A-Za-z0-9_]*)")


class RedirectsError(IpfsError):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(f"could not parse _redirects: {message}")


@dataclass(frozen=True)
class Rule:
    source: str
    to: str
    status: int
    force: bool
    pattern: re.Pattern[str]

    def match(self, path: str) -> str | None:
        """The target for ``path`` (placeholders and splat filled in), or None."""
        m = self.pattern.fullmatch(path)
        if m is None:
            return None
        values = {k: v for k, v in m.groupdict().items() if v is not None}

        def fill(p: re.Match[str]) -> str:
            name = p.group(1)
            if name == "splat":
                return values.get("splat", "")
            return values.get("p_" + name, p.group(0))

        return _PLACEHOLDER.sub(fill, self.to)


def _compile(source: str) -> re.Pattern[str]:
    out = []
    segments = source.split("/")
    for i, seg in enumerate(segments):
        if seg == "*" and i == len(segments) - 1:
            out.append("(?P<splat>.*)")
        elif seg.startswith(":") and _PLACEHOLDER.fullmatch(seg):
            out.append(f"(?P<p_{seg[1:]}>[^/]+)")
        else:
            out.append(re.escape(seg))
    # "/a/*" also matches "/a"
    pattern = "/".join(out)
    if pattern.endswith("/(?P<splat>.*)"):
        pattern = pattern[: -len("/(?P<splat>.*)")] + "(?:/(?P<splat>.*))?"
    return re.compile(pattern)


def parse(data: bytes) -> list[Rule]:
    if len(data) > MAX_SIZE:
        raise RedirectsError(f"the file is {len(data)} bytes, over the {MAX_SIZE}-byte limit")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RedirectsError("the file is not UTF-8") from None
    rules: list[Rule] = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if not line:
            continue
        fields = line.split()
        if len(fields) not in (2, 3):
            raise RedirectsError(f"line {n} has {len(fields)} fields; a rule is 'from to [status]'")
        source, to = fields[0], fields[1]
        status_text = fields[2] if len(fields) == 3 else "301"
        force = status_text.endswith("!")
        status_text = status_text.rstrip("!")
        if not status_text.isdigit() or int(status_text) not in STATUSES:
            raise RedirectsError(f"line {n}: status {fields[2]!r} is not one of {sorted(STATUSES)}")
        if not source.startswith("/"):
            raise RedirectsError(f"line {n}: 'from' must be a path starting with / (got {source!r})")
        if "?" in source:
            raise RedirectsError(f"line {n}: query parameters in 'from' are not supported")
        status = int(status_text)
        if not (to.startswith("/") or re.match(r"^[a-z][a-z0-9+.-]*://", to, re.I)):
            raise RedirectsError(f"line {n}: 'to' must be a path starting with / or an absolute URL (got {to!r})")
        if status in (200, 404, 410, 451) and not to.startswith("/"):
            raise RedirectsError(f"line {n}: a {status} rule serves a page of this site: 'to' must be a path")
        rules.append(Rule(source, to, status, force, _compile(source)))
    return rules


def find(rules: list[Rule], path: str, *, forced_only: bool = False) -> tuple[Rule, str] | None:
    for rule in rules:
        if forced_only and not rule.force:
            continue
        target = rule.match(path)
        if target is not None:
            return rule, target
    return None
