"""Subdomain mapping between custom URLs and gateway URLs (pure, no I/O).

``scheme://host/path?q`` ⇄ ``http://<label>.<scheme-label>.localhost:PORT/path?q``

- **Host → label.** A host that is one DNS label is used as is. Any other host is *inlined* with the IPFS DNSLink
  rule: every ``-`` becomes ``--`` and every ``.`` becomes ``-`` (``en.wikipedia-on-ipfs.org`` →
  ``en-wikipedia--on--ipfs-org``). Decoding reverses it: ``--`` → ``-``, then a single ``-`` → ``.``.
- **Scheme → label.** Registered schemes are either safelisted names (lowercase letters only) or ``web+``/``ext+``
  followed by lowercase letters, so ``+`` is the only character a DNS label can't hold and ``-`` never occurs. The
  label is the scheme with ``+`` replaced by ``-`` (``web+foo`` → ``web-foo``), which is reversible.
- A label longer than 63 octets can't be a DNS label: :class:`LabelTooLong`, answered with a 400.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from yarl import URL

from protoreg.errors import InvalidURL

__all__ = [
    "GatewayTarget",
    "LabelTooLong",
    "decode_host_label",
    "decode_scheme_label",
    "encode_host_label",
    "encode_scheme_label",
    "parse_host_header",
    "to_custom_url",
    "to_gateway_url",
]

MAX_LABEL: Final = 63
_LABEL: Final = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$|^[a-z0-9]$")
_SCHEME_LABEL: Final = re.compile(r"^(?:web|ext)-[a-z]+$|^[a-z]+$")


class LabelTooLong(InvalidURL):
    """The host does not fit in one DNS label (63 octets) once inlined."""


def encode_host_label(host: str) -> str:
    label = host.replace("-", "--").replace(".", "-") if "." in host else host
    if len(label) > MAX_LABEL:
        raise LabelTooLong(host, f"the host is {len(label)} characters as a DNS label (after inlining '-' as '--' "
                                 f"and '.' as '-'), over the {MAX_LABEL}-character limit of a DNS label, so it "
                                 "can't be served from a subdomain. Use a shorter host, e.g. a CIDv1 in base36")
    return label


def decode_host_label(label: str) -> str:
    if "-" not in label:
        return label
    out, i = [], 0
    while i < len(label):
        if label.startswith("--", i):
            out.append("-")
            i += 2
        elif label[i] == "-":
            out.append(".")
            i += 1
        else:
            out.append(label[i])
            i += 1
    return "".join(out)


def encode_scheme_label(scheme: str) -> str:
    return scheme.replace("+", "-")


def decode_scheme_label(label: str) -> str | None:
    """The scheme a label stands for, or None when the label can't be a scheme label."""
    if not _SCHEME_LABEL.match(label):
        return None
    return label.replace("-", "+", 1) if "-" in label else label


@dataclass(frozen=True)
class GatewayTarget:
    """What a request's Host header addresses: the dashboard (``scheme is None``) or a custom origin."""

    scheme: str | None
    host: str | None
    authority: str  # "localhost:8080": the gateway's own host and port, for building URLs back


def parse_host_header(value: str, suffix: str = "localhost") -> GatewayTarget | None:
    """Split ``<label>.<scheme>.localhost:PORT``; None when the Host is not one of ours (a 400)."""
    value = value.strip().lower()
    if not value or any(c in value for c in "/\\@ \t") or len(value) > 255:
        return None
    name, sep, port = value.rpartition(":") if not value.endswith("]") else (value, "", "")
    if not sep:
        name, port = value, ""
    if port and not port.isdigit():
        return None
    name = name.rstrip(".")
    authority = f"{suffix}:{port}" if port else suffix
    if name == suffix or name in ("127.0.0.1", "[::1]"):
        return GatewayTarget(None, None, f"{name}:{port}" if port else name)
    if not name.endswith("." + suffix):
        return None
    labels = name[: -len(suffix) - 1].split(".")
    if len(labels) == 1:  # <scheme>.localhost: no host
        scheme = decode_scheme_label(labels[0])
        return GatewayTarget(scheme, None, authority) if scheme else None
    if len(labels) != 2 or not all(labels):
        return None
    scheme = decode_scheme_label(labels[1])
    if scheme is None:
        return None
    return GatewayTarget(scheme, decode_host_label(labels[0]), authority)


def to_gateway_url(url: URL, authority: str, *, base_scheme: str = "http") -> URL:
    """``ipfs://cid/a?b`` → ``http://cid.ipfs.localhost:8080/a?b`` (raises LabelTooLong)."""
    if not url.host:
        raise InvalidURL(str(url), "a URL without a host has no gateway origin")
    host = f"{encode_host_label(url.host)}.{encode_scheme_label(url.scheme)}.{authority}"
    rest = url.raw_path_qs + (f"#{url.raw_fragment}" if url.raw_fragment else "")
    return URL(f"{base_scheme}://{host}{rest}", encoded=True)


def to_custom_url(target: GatewayTarget, path_qs: str) -> str:
    """The custom URL a gateway request addresses (path and query kept encoded as received)."""
    if target.scheme is None or target.host is None:
        raise InvalidURL(path_qs, "the request does not address a custom origin")
    if not path_qs.startswith("/"):
        path_qs = "/" + path_qs
    return f"{target.scheme}://{target.host}{path_qs}"
