"""Helpers for testing origin separation, CORS and CSP (``protoreg.testing``); fixtures live in ``plugin``.

Each assertion's failure message names the rule that was broken and what would fix it.
"""

from __future__ import annotations

from protoreg.testing.assertions import (
    assert_cross_origin_blocked,
    assert_cross_origin_readable,
    assert_csp_enforced,
    assert_inline_script_blocked,
    assert_same_origin,
    assert_secure_context,
    assert_separate_origins,
)
from protoreg.testing.bundles import write_extension

__all__ = [
    "assert_cross_origin_blocked",
    "assert_cross_origin_readable",
    "assert_csp_enforced",
    "assert_inline_script_blocked",
    "assert_same_origin",
    "assert_secure_context",
    "assert_separate_origins",
    "write_extension",
]
