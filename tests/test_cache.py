"""The parent-side cache of immutable handler answers (protoreg/cache.py): what is stored, what is answered from
it, and what drops it. Session tests count the handler's own invocations, so a hit is a request the worker never
saw."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

import protoreg
from protoreg.cache import ResponseCache, freshness_lifetime
from tests.test_session import bundle

IMMUTABLE = [("Cache-Control", "public, max-age=3600, immutable")]


# -- rules ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("headers", "lifetime"), [
    (IMMUTABLE, 3600.0),
    ([("Cache-Control", "max-age=60, immutable, s-maxage=10")], 10.0),
    ([("cache-control", "immutable"), ("Cache-Control", "max-age=5")], 5.0),
    ([("Cache-Control", "public, max-age=3600")], None),  # not declared immutable
    ([("Cache-Control", "immutable")], None),  # no freshness lifetime
    ([("Cache-Control", "max-age=0, immutable")], None),
    ([("Cache-Control", "max-age=x, immutable")], None),
    ([("Cache-Control", "private, max-age=60, immutable")], None),
    ([("Cache-Control", "no-store, max-age=60, immutable")], None),
    ([("Cache-Control", 'no-cache="Set-Cookie", max-age=60, immutable')], None),
    ([*IMMUTABLE, ("Set-Cookie", "a=b")], None),
    ([*IMMUTABLE, ("Vary", "Accept, *")], None),
    ([], None),
])
def test_freshness_lifetime_only_for_declared_immutable_answers(headers, lifetime):
    assert freshness_lifetime(headers) == lifetime


@pytest.mark.parametrize(("method", "headers", "expected"), [
    ("GET", [], (True, True)),
    ("HEAD", [], (True, False)),  # a HEAD is answered from a stored GET, never stored (it has no body)
    ("POST", [], (False, False)),
    ("GET", [("Range", "bytes=0-1")], (False, False)),
    ("GET", [("If-None-Match", '"x"')], (False, False)),
    ("GET", [("Authorization", "Bearer x")], (False, False)),
    ("GET", [("Cookie", "a=b")], (False, False)),
    ("GET", [("Cache-Control", "no-cache")], (False, True)),  # a reload refreshes the entry
    ("GET", [("Cache-Control", "max-age=0")], (False, True)),
    ("GET", [("Pragma", "no-cache")], (False, True)),
    ("GET", [("Cache-Control", "no-store")], (False, False)),
])
def test_which_requests_may_use_the_cache(method, headers, expected):
    assert ResponseCache.usable(method, headers) == expected


def test_vary_keys_on_the_named_request_headers():
    cache = ResponseCache()
    headers = [*IMMUTABLE, ("Vary", "Accept")]
    assert cache.put("e", "x://h/", "", [("Accept", "text/html")], 200, headers, b"html")
    assert cache.put("e", "x://h/", "", [("Accept", "application/vnd.ipld.raw")], 200, headers, b"raw")
    assert cache.get("e", "x://h/", "", [("Accept", "text/html")]).body == b"html"
    assert cache.get("e", "x://h/", "", [("accept", "application/vnd.ipld.raw")]).body == b"raw"
    assert cache.get("e", "x://h/", "", []) is None
    assert cache.get("e", "x://h/", "web+a://x", [("Accept", "text/html")]) is None  # another initiator
    assert cache.get("other", "x://h/", "", [("Accept", "text/html")]) is None
    assert len(cache) == 2


def test_not_stored_when_not_a_complete_immutable_200():
    cache = ResponseCache(max_bytes=1000, max_entry=100)
    assert not cache.put("e", "x://h/a", "", [], 404, IMMUTABLE, b"")
    assert not cache.put("e", "x://h/a", "", [], 200, [], b"")
    assert not cache.put("e", "x://h/a", "", [], 200, IMMUTABLE, b"x" * 101)
    assert len(cache) == 0 and cache.size == 0


def test_bounded_in_bytes_least_recently_used_first():
    cache = ResponseCache(max_bytes=2000, max_entry=1000)
    for i in range(5):
        assert cache.put("e", f"x://h/{i}", "", [], 200, IMMUTABLE, b"x" * 500)
        cache.get("e", "x://h/0", "", [])  # keeps 0 recently used
    assert cache.size <= 2000
    assert cache.get("e", "x://h/0", "", []) is not None and cache.get("e", "x://h/1", "", []) is None
    assert cache.get("e", "x://h/4", "", []) is not None


def test_expired_entries_are_not_answered(monkeypatch):
    cache = ResponseCache()
    cache.put("e", "x://h/", "", [], 200, [("Cache-Control", "max-age=10, immutable")], b"x")
    now = time.monotonic()
    assert cache.get("e", "x://h/", "", []).response_headers()[-1] == ("Age", "0")
    monkeypatch.setattr(time, "monotonic", lambda: now + 11)
    assert cache.get("e", "x://h/", "", []) is None and len(cache) == 0 and cache.size == 0


def test_forget_drops_one_extension():
    cache = ResponseCache()
    cache.put("e", "x://h/", "", [], 200, IMMUTABLE, b"x")
    cache.put("f", "y://h/", "", [], 200, IMMUTABLE, b"y")
    cache.forget("e")
    assert cache.get("e", "x://h/", "", []) is None and cache.get("f", "y://h/", "", []) is not None


@given(st.lists(st.tuples(st.sampled_from(["Cache-Control", "Vary", "Set-Cookie", "X"]),
                          st.text(max_size=40)), max_size=6))
def test_rules_never_crash_on_any_header_values(headers):
    lifetime = freshness_lifetime(headers)
    assert lifetime is None or lifetime > 0
    ResponseCache.usable("GET", headers)
    cache = ResponseCache(max_bytes=4096, max_entry=1024)
    stored = cache.put("e", "x://h/", "", headers, 200, headers, b"body")
    assert stored == (lifetime is not None)
    assert (cache.get("e", "x://h/", "", headers) is not None) == stored
    cache.forget("e")
    assert cache.size == 0 and len(cache) == 0


# -- through Session.fetch: the worker never sees a hit --------------------------------------------------------
APP = """
from protoreg import Response

count = {"n": 0}

async def handleRequest(request):
    count["n"] += 1
    path = request.url.path
    n = str(count["n"])
    if path == "/count":
        return Response(n, headers={"Cache-Control": "no-store"})
    immutable = {"Cache-Control": "public, max-age=3600, immutable", "X-Served": n}
    if path == "/big":
        return Response(b"b" * (3 << 20), headers=immutable)
    if path == "/huge":
        async def body():
            for _ in range(6):
                yield b"h" * (1 << 20)
        return Response(body(), headers=immutable)
    if path == "/cut":
        async def body():
            yield b"partial"
            raise RuntimeError("stream broke")
        return Response(body(), headers=immutable)
    if path == "/vary":
        return Response(request.headers.get("Accept", "none"), headers={**immutable, "Vary": "Accept"})
    if path == "/plain":
        return Response("p" + n, headers={"Cache-Control": "public, max-age=3600"})
    if path == "/cors":
        return Response("c" + n, headers={**immutable, "Access-Control-Allow-Origin": "web+c://allowed"})
    return Response("v" + n, headers=immutable)
"""


async def handler_calls(session):
    return int(await (await session.fetch("web+c://h/count")).text())


@pytest.fixture
async def cached(tmp_path):
    reg = protoreg.Registry()
    reg.install(bundle(tmp_path, "c", "web+c", APP, csp="script-src 'self'"))
    async with protoreg.Session(reg, request_timeout=5.0) as s:
        yield s


async def test_a_repeat_is_answered_without_the_worker(cached):
    first = await cached.fetch("web+c://h/page")
    assert await first.text() == "v1" and "Age" not in first.headers
    before = await handler_calls(cached)
    again = await cached.fetch("web+c://h/page")
    assert await again.text() == "v1" and again.headers["X-Served"] == "1" and again.headers["Age"] == "0"
    assert await handler_calls(cached) == before + 1  # only the /count request reached the worker
    assert cached.cache.hits == 1
    # policy still runs on a hit: the extension's CSP is merged in as on the first answer
    assert again.headers.getall("Content-Security-Policy") == first.headers.getall("Content-Security-Policy")
    head = await cached.fetch("web+c://h/page", method="HEAD")
    assert head.status == 200 and await head.read() == b"" and head.headers["X-Served"] == "1"


async def test_only_declared_immutable_answers_are_kept(cached):
    assert await (await cached.fetch("web+c://h/plain")).text() == "p1"
    assert await (await cached.fetch("web+c://h/plain")).text() == "p2"


async def test_streamed_bodies_are_kept_up_to_the_entry_limit(cached):
    big = await cached.fetch("web+c://h/big")
    assert len(await big.read()) == 3 << 20
    assert (await cached.fetch("web+c://h/big")).headers["X-Served"] == "1"
    huge = await cached.fetch("web+c://h/huge")
    assert len(await huge.read()) == 6 << 20
    again = await cached.fetch("web+c://h/huge")  # over 4 MiB: not kept, the handler answers again
    assert again.headers["X-Served"] != huge.headers["X-Served"]
    await again.read()


async def test_a_body_read_partly_or_cut_off_is_not_kept(cached):
    resp = await cached.fetch("web+c://h/cut")
    with pytest.raises(protoreg.ProtoregError):
        await resp.read()
    second = await cached.fetch("web+c://h/cut")
    assert second.headers["X-Served"] != resp.headers["X-Served"]
    second.close()
    partly = await cached.fetch("web+c://h/huge")
    async for _chunk in partly.stream():
        break
    partly.close()  # the reader stopped early: nothing stored
    third = await cached.fetch("web+c://h/huge")
    assert third.headers["X-Served"] != partly.headers["X-Served"]
    third.close()


async def test_vary_and_bypassing_requests(cached):
    a = await cached.fetch("web+c://h/vary", headers={"Accept": "text/html"})
    b = await cached.fetch("web+c://h/vary", headers={"Accept": "image/png"})
    assert (await a.text(), await b.text()) == ("text/html", "image/png")
    again = await cached.fetch("web+c://h/vary", headers={"Accept": "text/html"})
    assert again.headers["X-Served"] == a.headers["X-Served"]
    reload = await cached.fetch("web+c://h/vary", headers={"Accept": "text/html", "Cache-Control": "no-cache"})
    assert reload.headers["X-Served"] != a.headers["X-Served"]  # the handler answered: the entry is refreshed
    assert await reload.text() == "text/html"  # (once its body has been read)
    assert (await cached.fetch("web+c://h/vary", headers={"Accept": "text/html"})).headers["X-Served"] == \
        reload.headers["X-Served"]
    ranged = await cached.fetch("web+c://h/vary", headers={"Accept": "text/html", "Range": "bytes=0-1"})
    assert ranged.headers["X-Served"] != reload.headers["X-Served"]


async def test_cors_still_applies_to_a_hit(cached):
    ok = await cached.fetch("web+c://h/cors", origin="web+c://allowed", mode="cors")
    assert await ok.text() == "c1"
    again = await cached.fetch("web+c://h/cors", origin="web+c://allowed", mode="cors")
    assert again.headers.get("Age") is None  # CORS-filtered: Age is not a safelisted response header
    assert await again.text() == "c1"
    with pytest.raises(protoreg.PolicyError, match="Access-Control-Allow-Origin"):
        await cached.fetch("web+c://h/cors", origin="web+c://other", mode="cors")


async def test_revocation_refuses_and_drops_entries(cached):
    reg = cached.registry
    first = await cached.fetch("web+c://h/page")
    assert await first.text() == "v1"
    reg.disable("c@test", "revoked by the test")
    with pytest.raises(protoreg.ProtoregError, match="revoked by the test"):
        await cached.fetch("web+c://h/page")
    assert len(cached.cache) == 0


async def test_uninstall_drops_entries(tmp_path):
    reg = protoreg.Registry()
    root = bundle(tmp_path, "c", "web+c", APP)
    reg.install(root)
    async with protoreg.Session(reg, request_timeout=5.0) as s:
        assert await (await s.fetch("web+c://h/page")).text() == "v1"
        reg.uninstall("c@test")
        assert len(s.cache) == 0
        reg.install(root)
        assert (await s.fetch("web+c://h/page")).headers["X-Served"] == "1"  # a fresh worker with new code


async def test_the_cache_can_be_turned_off(tmp_path):
    reg = protoreg.Registry()
    reg.install(bundle(tmp_path, "c", "web+c", APP))
    async with protoreg.Session(reg, request_timeout=5.0, response_cache_bytes=0) as s:
        assert s.cache is None
        assert await (await s.fetch("web+c://h/page")).text() == "v1"
        assert await (await s.fetch("web+c://h/page")).text() == "v2"


async def test_the_gateway_answers_a_repeat_from_the_cache_with_its_policy_headers(aiohttp_client, tmp_path):
    from protoreg.gateway import create_app
    from tests.gateway.test_app import host

    reg = protoreg.Registry()
    reg.install(bundle(tmp_path, "c", "web+c", APP, csp="script-src 'self'"))
    client = await aiohttp_client(create_app(reg, request_timeout=5.0))
    headers = host("h", "web+c", "c@test")
    first = await client.get("/page", headers=headers)
    second = await client.get("/page", headers=headers)
    assert (await first.text(), await second.text()) == ("v1", "v1")
    assert second.headers["Age"] == "0" and second.headers["X-Content-Type-Options"] == "nosniff"
    assert second.headers.getall("Content-Security-Policy") == first.headers.getall("Content-Security-Policy")
    big = []
    for _ in range(2):  # streamed to the browser, then kept
        big.append(await client.get("/big", headers=headers))
        assert len(await big[-1].read()) == 3 << 20
    assert big[1].headers["X-Served"] == big[0].headers["X-Served"]
    count = await client.get("/count", headers=headers)
    assert await count.text() == "3"  # /page, /big and this one reached the handler; the repeats did not
    board = await (await client.get("/", headers={"Host": "localhost:8080"})).text()
    assert "Response cache: 2 answers" in board and "2 hits" in board


def test_collectors_share_one_budget_and_give_it_back():
    cache = ResponseCache(max_bytes=4000, max_entry=1500)
    assert cache.collect_max == 1500  # max(max_entry, max_bytes // 4)
    stored = []
    a, b = cache.collector(stored.append), cache.collector(stored.append)
    assert a.add(1000) and not b.add(600)  # b would pass the budget: it stops collecting at once
    assert cache.collecting == 1000 and not b.add(1)  # and stays stopped
    assert not a.add(600) and cache.collecting == 0  # over max_entry: a gives its bytes back
    c = cache.collector(stored.append)
    assert c.add(700)
    c.finish(b"x" * 700)
    assert stored == [b"x" * 700] and cache.collecting == 0
    d = cache.collector(stored.append)
    assert d.add(10)
    d.abandon()
    d.finish(b"y")  # ended: nothing stored
    assert cache.collecting == 0 and stored == [b"x" * 700]


async def test_many_concurrent_large_answers_hold_at_most_the_collect_budget(cached):
    cached.cache.collect_max = 4 << 20  # room for one 3 MiB body at a time
    peak = 0
    responses = [await cached.fetch("web+c://h/big") for _ in range(3)]  # three handler answers in flight
    sizes = {r.stream(): 0 for r in responses}
    live = list(sizes)
    while live:  # read them in turns, so all three are collecting at once
        for body in list(live):
            try:
                sizes[body] += len(await body.__anext__())
            except StopAsyncIteration:
                live.remove(body)
            peak = max(peak, cached.cache.collecting)
    assert list(sizes.values()) == [3 << 20] * 3  # every reader got its whole body
    assert peak <= 4 << 20 and cached.cache.collecting == 0 and len(cached.cache) == 1


async def test_a_get_with_a_body_is_never_answered_from_or_stored_in_the_cache(cached):
    first = await cached.fetch("web+c://h/page", body=b"x")
    assert await first.text() == "v1" and len(cached.cache) == 0
    assert await (await cached.fetch("web+c://h/page")).text() == "v2"
    assert await (await cached.fetch("web+c://h/page", body=b"x")).text() == "v3"


def test_long_urls_and_vary_values_count_against_the_cap():
    """Requesters choose URLs and header values: a flood of tiny answers under 8 KB URLs must not outgrow the cap
    (the key is part of what an entry costs)."""
    cache = ResponseCache(max_bytes=1 << 20, max_entry=1024)
    headers = [*IMMUTABLE, ("Vary", "Accept")]
    for i in range(1000):
        cache.put("e", f"x://h/{i:06d}?{'q' * 8000}", "", [("Accept", "a" * 4000)], 200, headers, b"")
    assert 0 < cache.size <= 1 << 20 and len(cache) <= (1 << 20) // 12000
    cache.forget("e")
    assert cache.size == 0
