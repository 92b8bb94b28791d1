"""Subdomain mapping between custom URLs and gateway URLs (pure, no I/O).

``scheme://host/path?q`` ⇄ ``http://<host-label>.<scheme-label>.<site-label>.localhost:PORT/path?q``

Every custom origin must be its own browser *site*, or two origins share cookies (``Domain=``), and can meet
through ``document.domain``. Chromium's site of ``a.b.c.localhost`` is ``c.localhost`` (the label just before
``localhost``), so that label is unique per origin:

- **Site label**: ``s`` + 24 base32 characters of SHA-256 over (owning extension id, scheme, host): 120 bits, so
  no host can be chosen to land on another origin's site. Naming the *owning extension* means that when another
  extension takes over a scheme, all of the scheme's gateway origins change: the old owner's cookies, storage
  and service workers stay behind on origins nothing serves any more (the gateway answers them with
  ``Clear-Site-Data``).
- **Host label** (bijective): a host that is a plain DNS label (``[a-z0-9]`` words joined by single ``-``, the
  shape of every CID and IPNS key) is used as is. Any other host is written ``i--`` followed by the host with each
  character other than ``a-z0-9`` as ``-`` and two hex digits (``my.site`` → ``i--my-2esite``, ``a--b`` →
  ``i--a-2d-2db``). A plain label never contains ``--``, so the two forms can't collide, and a label is accepted
  only in its one canonical spelling. A label over 63 octets can't be a DNS label: :class:`LabelTooLong`, a 400.
- **Scheme label**: the scheme with ``+`` as ``-`` (``web+foo`` → ``web-foo``); schemes hold no ``-``.

``<host>.<scheme>.localhost`` without the site label (the IPFS subdomain-gateway form people type) is accepted
and redirected to the full form; it never serves content itself.
"""

from __future__ import annotations

import base64
import functools
import hashlib
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
    "site_label",
    "to_custom_url",
    "to_gateway_url",
]

MAX_LABEL: Final = 63
ESCAPED: Final = "i--"
_PLAIN: Final = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_ESCAPED_BODY: Final = re.compile(r"^(?:[a-z0-9]|-[0-9a-f]{2})+$")
_SCHEME_LABEL: Final = re.compile(r"^(?:web|ext)-[a-z]+$|^[a-z]+$")
_SITE_LABEL: Final = re.compile(r"^s[a-z2-7]{24}$")


class LabelTooLong(InvalidURL):
    """The host does not fit in one DNS label (63 octets) once encoded."""


def encode_host_label(host: str) -> str:
    if _PLAIN.match(host):
        label = host
    else:
        if any(ord(c) > 0x7E or ord(c) < 0x21 for c in host):
            raise InvalidURL(host, "a host must be ASCII (punycode) before it can be a gateway label")
        label = ESCAPED + "".join(c if (c.isalnum() and c.islower()) or c.isdigit() else f"-{ord(c):02x}"
                                  for c in host)
    if len(label) > MAX_LABEL:
        raise LabelTooLong(host, f"the host is {len(label)} characters as a DNS label, over the {MAX_LABEL}-"
                                 "character limit of a DNS label, so it can't be served from a subdomain. Use a "
                                 "shorter host (a CIDv1 in base36 fits; hosts other than one plain DNS label "
                                 "take three characters per dot or dash)")
    return label


def decode_host_label(label: str) -> str | None:
    """The host a label stands for, or None when the label is not the canonical encoding of any host."""
    if "--" not in label:
        return label if _PLAIN.match(label) else None
    body = label[len(ESCAPED):]
    if not label.startswith(ESCAPED) or not body or not _ESCAPED_BODY.match(body):
        return None
    host = re.sub(r"-([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), body)
    try:
        canonical = encode_host_label(host)
    except InvalidURL:
        return None
    return host if canonical == label else None


def encode_scheme_label(scheme: str) -> str:
    return scheme.replace("+", "-")


def decode_scheme_label(label: str) -> str | None:
    """The scheme a label stands for, or None when the label can't be a scheme label."""
    if not _SCHEME_LABEL.match(label):
        return None
    return label.replace("-", "+", 1) if "-" in label else label


@functools.lru_cache(maxsize=4096)
def site_label(owner: str, scheme: str, host: str) -> str:
    """The label that makes ``scheme://host``, served by extension ``owner``, a browser site of its own."""
    digest = hashlib.sha256(f"{owner}\0{scheme}\0{host}".encode()).digest()
    return "s" + base64.b32encode(digest).decode().lower()[:24]


@dataclass(frozen=True)
class GatewayTarget:
    """What a request's Host header addresses: the dashboard (``scheme is None``) or a custom origin."""

    scheme: str | None
    host: str | None
    authority: str  # "localhost:8080": the gateway's own host and port, for building URLs back
    site: str | None = None  # the site label as received (None: the short form, to be redirected)


@functools.lru_cache(maxsize=4096)  # a pure function of the header; browsers send the same few Hosts over and over
def parse_host_header(value: str, suffix: str = "localhost") -> GatewayTarget | None:
    """Split ``<host>.<scheme>[.<site>].localhost:PORT``; None when the Host is not one of ours (a 400)."""
    value = value.strip().lower()
    if not value or any(c in value for c in "/\\@ \t") or len(value) > 255:
        return None
    name, sep, port = value.rpartition(":") if not value.endswith("]") else (value, "", "")
    if not sep:
        name, port = value, ""
    if port and not (port.isdigit() and len(port) <= 5 and int(port) <= 65535):
        return None
    if name.endswith("."):  # a trailing dot is another browser origin than the one we serve
        return None
    authority = f"{suffix}:{port}" if port else suffix
    if name == suffix or name in ("127.0.0.1", "[::1]"):
        return GatewayTarget(None, None, f"{name}:{port}" if port else name)
    if not name.endswith("." + suffix):
        return None
    labels = name[: -len(suffix) - 1].split(".")
    if len(labels) == 1:  # <scheme>.localhost: no host
        scheme = decode_scheme_label(labels[0])
        return GatewayTarget(scheme, None, authority) if scheme else None
    if len(labels) == 3 and not _SITE_LABEL.match(labels[2]):
        return None
    if len(labels) not in (2, 3) or not all(labels):
        return None
    scheme = decode_scheme_label(labels[1])
    host = decode_host_label(labels[0])
    if scheme is None or host is None:
        return None
    return GatewayTarget(scheme, host, authority, labels[2] if len(labels) == 3 else None)


def to_gateway_url(url: URL, authority: str, owner: str, *, base_scheme: str = "http") -> URL:
    """``ipfs://cid/a?b`` served by ``owner`` → ``http://cid.ipfs.s….localhost:8080/a?b`` (raises LabelTooLong)."""
    raw = url.raw_host  # the ASCII (punycode) host as WHATWG produced it; yarl's .host IDNA-decodes and can fail
    if not raw:
        raise InvalidURL(str(url), "a URL without a host has no gateway origin")
    host = (f"{encode_host_label(raw)}.{encode_scheme_label(url.scheme)}."
            f"{site_label(owner, url.scheme, raw)}.{authority}")
    rest = url.raw_path_qs + (f"#{url.raw_fragment}" if url.raw_fragment else "")
    return URL(f"{base_scheme}://{host}{rest}", encoded=True)


def to_custom_url(target: GatewayTarget, path_qs: str) -> str:
    """The custom URL a gateway request addresses (path and query kept encoded as received)."""
    if target.scheme is None or target.host is None:
        raise InvalidURL(path_qs, "the request does not address a custom origin")
    if not path_qs.startswith("/"):
        path_qs = "/" + path_qs
    return f"{target.scheme}://{target.host}{path_qs}"
