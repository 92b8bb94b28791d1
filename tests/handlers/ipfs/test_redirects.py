"""_redirects files (IPFS web-redirects-file spec): placeholders, splats, each status, forced rules, the 64 KiB
limit, custom 404 pages with their own ETag; and not for raw/CAR responses."""

from __future__ import annotations

import pytest

from tests.handlers.ipfs.conftest import core
from tests.handlers.ipfs.test_gateway import _getter

REDIRECTS = """\
# comments and blank lines are ignored

/old/:year/:slug    /posts/:year/:slug.html   301
/blog/*             /posts/:splat             302
/see-other          /index.html               303
/tmp                /index.html               307
/perm               /index.html               308
/app/*              /app/index.html           200
/gone               /index.html               410
/legal              /index.html               451
/index.html         /forced.html              200!
/ext                https://example.org/x     301
/*                  /404.html                 404
"""


def site(tmp_path, redirects: str | bytes = REDIRECTS, with_404: bool = True):
    root = tmp_path / "site"
    (root / "posts" / "2024").mkdir(parents=True)
    (root / "app").mkdir()
    (root / "index.html").write_text("<!doctype html>home")
    (root / "forced.html").write_text("<!doctype html>forced")
    (root / "posts" / "2024" / "hello.html").write_text("<!doctype html>post")
    (root / "app" / "index.html").write_text("<!doctype html>spa")
    if with_404:
        (root / "404.html").write_text("<!doctype html>not here")
    (root / "_redirects").write_bytes(redirects if isinstance(redirects, bytes) else redirects.encode())
    store = core.blocks.BlockStore(tmp_path / "blocks")
    built = core.importer.add_path(root, store.put)
    return _getter(store), core.cids.v1_base32(built.cid), store


def test_placeholders_splats_and_redirect_statuses(tmp_path):
    gw, cid, _ = site(tmp_path)
    assert gw(f"ipfs://{cid}/old/2024/hello")[:2] == (301, {"Location": "/posts/2024/hello.html",
                                                           "Content-Length": "0"})
    assert gw(f"ipfs://{cid}/blog/2024/hello.html")[1]["Location"] == "/posts/2024/hello.html"
    assert gw(f"ipfs://{cid}/blog/2024/hello.html")[0] == 302
    for path, status in (("/see-other", 303), ("/tmp", 307), ("/perm", 308)):
        assert gw(f"ipfs://{cid}{path}")[0] == status
    assert gw(f"ipfs://{cid}/ext")[1]["Location"] == "https://example.org/x"


def test_rewrite_200_gone_410_legal_451_and_custom_404_with_its_own_etag(tmp_path):
    gw, cid, _ = site(tmp_path)
    status, h, body = gw(f"ipfs://{cid}/app/some/deep/route")
    assert (status, body) == (200, b"<!doctype html>spa")
    assert gw(f"ipfs://{cid}/gone")[0] == 410
    assert gw(f"ipfs://{cid}/legal")[0] == 451
    status, h, body = gw(f"ipfs://{cid}/nothing/here")
    assert (status, body) == (404, b"<!doctype html>not here")
    not_found_cid = core.cids.v1_base32(core.cids.raw_cid(b"<!doctype html>not here"))
    assert h["ETag"] == f'"{not_found_cid}"' and "Cache-Control" not in h
    assert h["Content-Type"].startswith("text/html")


def test_existing_paths_win_unless_the_rule_is_forced(tmp_path):
    gw, cid, _ = site(tmp_path)
    assert gw(f"ipfs://{cid}/posts/2024/hello.html")[2] == b"<!doctype html>post"
    assert gw(f"ipfs://{cid}/index.html")[2] == b"<!doctype html>forced"   # 200! applies to an existing path


def test_trustless_responses_ignore_redirects(tmp_path):
    gw, cid, _ = site(tmp_path)
    assert gw(f"ipfs://{cid}/nothing?format=raw")[0] == 404
    assert gw(f"ipfs://{cid}/index.html?format=raw")[0] == 200


@pytest.mark.parametrize("bad", [b"/a\n" + b"#" * 10 + b"\n", b"/a /b 999\n", b"a /b\n", b"/a b 200\n",
                                 b"# pad\n" * 11000])
def test_an_unparsable_or_oversized_file_is_a_500_that_says_so(tmp_path, bad):
    gw, cid, _ = site(tmp_path, bad)
    status, _, body = gw(f"ipfs://{cid}/anything")
    assert status == 500 and b"could not parse _redirects" in body


def test_parse_unit():
    rules = core.redirects.parse(b"/a/:x/* /b/:x/:splat 302\n")
    assert core.redirects.find(rules, "/a/1/2/3")[1] == "/b/1/2/3"
    assert core.redirects.find(rules, "/a") is None
    assert core.redirects.find(core.redirects.parse(b"/x/* /y/:splat\n"), "/x")[1] == "/y/"
