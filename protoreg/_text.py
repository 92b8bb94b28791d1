"""Text that came from a worker, made safe to log or show: control characters are escaped, so a handler can't
forge log lines (a newline) or drive the operator's terminal (an escape sequence)."""

from __future__ import annotations

import re

__all__ = ["clip", "printable"]

# C0 controls but tab, DEL, C1 controls, and the Unicode line/paragraph separators and bidi overrides.
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with every control character written as a visible escape (``\\n``, ``\\x1b``, ``\\u2028``)."""
    return _UNSAFE.sub(_escape, text)


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    return {"\n": "\\n", "\r": "\\r"}.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def clip(text: str, limit: int = 1024) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut (a worker chooses its URLs and keys: what
    protoreg keeps or logs of them is bounded)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters not kept)"
