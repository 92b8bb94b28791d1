"""protoreg.embed.site and protoreg.embed's errors: no engine needed."""

from __future__ import annotations

import dataclasses

import protoreg
from protoreg.embed import EmbedError, EngineUnavailable
from protoreg.embed.site import site_info
from tests.handlers.ipfs.helpers import IPFS_BUNDLE


def test_site_info_names_scheme_origin_trust_and_the_serving_extension():
    reg = protoreg.Registry()
    reg.install(IPFS_BUNDLE)
    info = site_info(reg, "ipfs://bafyabc/docs/x.html")
    assert (info.scheme, info.origin, info.trustworthy) == ("ipfs", "ipfs://bafyabc", True)
    assert info.extension_id == "ipfs@protoreg" and info.extension_name == "IPFS" and info.store is None
    assert "unsigned" in info.summary() and "secure" in info.summary()


def test_site_info_reports_the_signing_store():
    reg = protoreg.Registry()
    ext = reg.install(IPFS_BUNDLE)
    reg.replace(dataclasses.replace(ext, provenance="store alpha"))  # as a signed install from store alpha
    assert reg.lookup("ipfs").extension.provenance == "store alpha"
    assert site_info(reg, "ipfs://bafyabc/").store == "alpha"


def test_site_info_of_other_urls_has_no_extension():
    reg = protoreg.Registry()
    assert site_info(reg, "https://example.org/a").extension_id is None
    assert site_info(reg, "http://example.org/").trustworthy is False


def test_a_missing_engine_names_the_extra_to_install():
    err = EngineUnavailable("PySide6", "qt", ImportError("No module named 'PySide6'"))
    assert isinstance(err, protoreg.ProtoregError) and isinstance(err, ImportError) and isinstance(err, EmbedError)
    assert "pip install 'protoreg[qt]'" in str(err)
