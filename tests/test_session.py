"""Session.fetch through real worker processes: echo, CORS, no-cors, CSP, redirects, timeouts, trust, ranges."""

from __future__ import annotations

import asyncio
import json
import textwrap

import pytest

import protoreg
from protoreg.errors import InvalidURL, PolicyError, UnknownScheme

APP = """
from protoreg import Response
import json

calls = []

async def handleRequest(request):
    path = request.url.path
    calls.append(f"{request.method} {path}")
    if path == "/calls":
        return Response.json(calls)
    if path == "/echo":
        body = await request.read()
        return Response.json({"method": request.method, "url": str(request.url), "origin": request.origin,
                              "headers": dict(request.headers), "body": body.decode()})
    if path == "/open":
        return Response("public", headers={"Access-Control-Allow-Origin": "*", "X-Hidden": "1"})
    if path == "/closed":
        return Response("private")
    if path == "/preflighted":
        if request.method == "OPTIONS":
            return Response(None, 204, {"Access-Control-Allow-Origin": request.headers.get("Origin", ""),
                                        "Access-Control-Allow-Methods": "PUT",
                                        "Access-Control-Allow-Headers": "x-token"})
        return Response("put ok", headers={"Access-Control-Allow-Origin": request.headers.get("Origin", "")})
    if path == "/no-preflight":
        if request.method == "OPTIONS":
            return Response(None, 204)
        return Response("should never run", headers={"Access-Control-Allow-Origin": "*"})
    if path == "/csp":
        return Response("x", headers={"Content-Security-Policy": "default-src *; object-src *"})
    if path == "/redirect-cross-scheme":
        return Response.redirect("web+b://other/echo", 307)
    if path == "/see-other":
        return Response.redirect("/echo", 303)
    if path == "/loop":
        return Response.redirect("/loop")
    if path == "/slow":
        import asyncio
        await asyncio.sleep(30)
    if path == "/range":
        data = b"0123456789"
        rng = request.headers.get("Range", "")
        if rng.startswith("bytes="):
            start, _, end = rng[6:].partition("-")
            part = data[int(start): int(end) + 1]
            return Response(part, 206, {"Content-Range": f"bytes {start}-{end}/{len(data)}"})
        return Response(data)
    return Response.error(404)
"""


def bundle(tmp_path, name, scheme, script, *, csp=None, trustworthy=False, template=None):
    root = tmp_path / name
    root.mkdir()
    handler = {"protocol": scheme, "name": scheme, "uriIsTrustworthy": trustworthy}
    if template:
        handler["uriTemplate"] = template
    else:
        handler["uriHandlerScript"] = "handler.py"
        (root / "handler.py").write_text(textwrap.dedent(script))
    manifest = {"name": name, "version": "1.0", "browser_specific_settings": {"gecko": {"id": f"{name}@test"}},
                "protocol_handlers": [handler]}
    if csp:
        manifest["content_security_policy"] = {"protocol_pages": csp}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture
async def session(tmp_path):
    reg = protoreg.Registry()
    reg.install(bundle(tmp_path, "a", "web+a", APP, csp="script-src 'self'", trustworthy=True))
    reg.install(bundle(tmp_path, "b", "web+b", APP))
    reg.install(bundle(tmp_path, "t", "web+t", None, template="https://gateway.example/?uri=%s"))
    async with protoreg.Session(reg, request_timeout=2.0) as s:
        yield s


async def test_echo_of_method_headers_body_and_resolved_url(session):
    resp = await session.fetch("web+a://Host:8080/x/../echo?q=1", method="POST", headers={"X-Test": "yes"},
                               body="hello")
    data = await resp.json()
    assert resp.status == 200 and resp.type == "basic"
    assert data["method"] == "POST" and data["body"] == "hello" and data["headers"]["X-Test"] == "yes"
    assert data["url"] == "web+a://host/echo?q=1"
    assert str(resp.url) == "web+a://host/echo?q=1"
    assert resp.origin.serialize() == "web+a://host"


async def test_trust_is_marked_from_the_manifest(session):
    assert (await session.fetch("web+a://h/open")).secure_context is True
    assert (await session.fetch("web+b://h/open")).secure_context is False


async def test_cross_origin_cors_allowed_with_allow_origin_and_headers_filtered(session):
    resp = await session.fetch("web+b://h/open", origin="web+a://x", mode="cors")
    assert resp.type == "cors" and await resp.text() == "public"
    assert "X-Hidden" not in resp.headers and resp.headers["Content-Type"].startswith("text/plain")


async def test_cross_origin_cors_blocked_without_allow_origin(session):
    with pytest.raises(PolicyError, match="no Access-Control-Allow-Origin header"):
        await session.fetch("web+b://h/closed", origin="web+a://x", mode="cors")


async def test_two_hosts_of_one_scheme_are_cross_origin(session):
    with pytest.raises(PolicyError, match="blocked by CORS"):
        await session.fetch("web+a://other/closed", origin="web+a://x", mode="cors")
    same = await session.fetch("web+a://x/closed", origin="web+a://x", mode="cors")
    assert same.type == "basic" and await same.text() == "private"


async def test_preflight_success_then_actual_request(session):
    resp = await session.fetch("web+b://h/preflighted", method="PUT", headers={"X-Token": "1"},
                               origin="web+a://x", mode="cors")
    assert await resp.text() == "put ok"
    calls = await (await session.fetch("web+b://h/calls")).json()
    assert calls[-3:-1] == ["OPTIONS /preflighted", "PUT /preflighted"]


async def test_failed_preflight_means_the_handler_never_sees_the_actual_request(session):
    with pytest.raises(PolicyError, match="CORS preflight .* failed: .*no Access-Control-Allow-Origin"):
        await session.fetch("web+b://h/no-preflight", method="DELETE", origin="web+a://x", mode="cors")
    calls = await (await session.fetch("web+b://h/calls")).json()
    assert "OPTIONS /no-preflight" in calls
    assert "DELETE /no-preflight" not in calls


async def test_no_cors_gives_an_opaque_response(session):
    resp = await session.fetch("web+b://h/closed", origin="web+a://x", mode="no-cors")
    assert (resp.type, resp.status, dict(resp.headers), await resp.read()) == ("opaque", 0, {}, b"")
    with pytest.raises(PolicyError, match="only allows GET, HEAD and POST"):
        await session.fetch("web+b://h/closed", method="PUT", origin="web+a://x", mode="no-cors")


async def test_same_origin_mode_refuses_cross_origin(session):
    with pytest.raises(PolicyError, match="mode 'same-origin'"):
        await session.fetch("web+b://h/open", origin="web+a://x", mode="same-origin")


async def test_csp_merges_baseline_extension_and_handler_and_cannot_be_loosened(session):
    resp = await session.fetch("web+a://h/csp")
    values = resp.headers.getall("Content-Security-Policy")
    assert values == ["object-src 'none'; base-uri 'self'; frame-ancestors 'self'", "script-src 'self'",
                      "default-src *; object-src *"]
    plain = await session.fetch("web+b://h/open")
    assert plain.headers.getall("Content-Security-Policy") == [
        "object-src 'none'; base-uri 'self'; frame-ancestors 'self'"]


async def test_redirect_to_relative_location_resolves_against_the_current_url(tmp_path):
    reg = protoreg.Registry()
    reg.install(bundle(tmp_path, "r", "web+r", """
        from protoreg import Response
        async def handleRequest(request):
            if request.url.path == "/a/b/start":
                return Response.redirect("../target?x=1")
            return Response(f"{request.method} {request.url}")
    """))
    async with protoreg.Session(reg) as s:
        resp = await s.fetch("web+r://h/a/b/start")
        assert await resp.text() == "GET web+r://h/a/target?x=1"
        assert resp.redirected and str(resp.url) == "web+r://h/a/target?x=1"


async def test_303_turns_a_post_into_a_get_and_307_crosses_schemes_keeping_the_method(session):
    resp = await session.fetch("web+a://h/see-other", method="POST", body="data")
    assert (await resp.json())["method"] == "GET"
    resp = await session.fetch("web+a://h/redirect-cross-scheme", method="POST", body="kept")
    data = await resp.json()
    assert (data["method"], data["body"], data["url"]) == ("POST", "kept", "web+b://other/echo")


async def test_redirect_loops_stop_after_twenty(session):
    with pytest.raises(protoreg.TooManyRedirects, match="more than 20 times"):
        await session.fetch("web+a://h/loop")


async def test_template_only_scheme_redirects_to_the_filled_template(session):
    resp = await session.fetch("web+t://some/page")
    assert resp.status == 302
    assert resp.headers["Location"] == "https://gateway.example/?uri=web%2Bt%3A%2F%2Fsome%2Fpage"


async def test_timeout_gives_504_and_names_the_handler(session):
    resp = await session.fetch("web+a://h/slow", timeout=0.3)
    assert resp.status == 504 and resp.type == "error"
    assert "handler.py of a@test did not answer GET web+a://h/slow within 0.3s" in await resp.text()


async def test_range_requests_pass_through_and_206_comes_back_intact(session):
    resp = await session.fetch("web+a://h/range", headers={"Range": "bytes=2-5"})
    assert resp.status == 206 and resp.headers["Content-Range"] == "bytes 2-5/10"
    assert await resp.read() == b"2345"


async def test_handler_fault_is_an_error_response_naming_the_script(tmp_path):
    reg = protoreg.Registry()
    reg.install(bundle(tmp_path, "f", "web+f", """
        async def handleRequest(request):
            return {"not": "a response"}
    """))
    async with protoreg.Session(reg) as s:
        resp = await s.fetch("web+f://h/")
        assert resp.status == 502 and resp.type == "error"
        assert "handler handler.py returned dict, not a protoreg.Response" in await resp.text()


async def test_changing_the_script_on_disk_changes_nothing_until_reinstall(tmp_path):
    reg = protoreg.Registry()
    root = bundle(tmp_path, "d", "web+d", """
        from protoreg import Response
        async def handleRequest(request):
            return Response("installed version")
    """)
    reg.install(root)
    (root / "handler.py").write_text("from protoreg import Response\n"
                                     "async def handleRequest(r):\n    return Response('tampered')\n")
    async with protoreg.Session(reg, prestart=False) as s:
        assert await (await s.fetch("web+d://h/")).text() == "installed version"


async def test_cancelled_fetch_aborts_the_handler(session):
    task = asyncio.ensure_future(session.fetch("web+a://h/slow"))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (pool,) = [p for p in session.workers.stats() if p["extension"] == "a@test"]
    assert all(w["in_flight"] == 0 for w in pool["workers"])


async def test_bad_input_errors(session):
    with pytest.raises(UnknownScheme, match="registered schemes: web\\+a, web\\+b, web\\+t"):
        await session.fetch("web+zzz://h/")
    with pytest.raises(InvalidURL):
        await session.fetch("web+a://")
    with pytest.raises(ValueError, match="mode must be one of"):
        await session.fetch("web+a://h/", mode="bogus")  # type: ignore[arg-type]


async def test_a_handler_in_a_busy_loop_gets_its_worker_replaced_after_the_timeout(tmp_path):
    reg = protoreg.Registry()
    reg.install(bundle(tmp_path, "spin", "web+spin", """
        import os
        from protoreg import Response
        async def handleRequest(request):
            if request.url.path == "/spin":
                while True:
                    pass
            return Response(str(os.getpid()))
    """))
    async with protoreg.Session(reg, request_timeout=0.5, liveness_timeout=0.5) as s:
        first = int(await (await s.fetch("web+spin://h/pid")).text())
        stuck = await s.fetch("web+spin://h/spin")
        assert stuck.status == 504
        await asyncio.sleep(1.5)  # the watchdog's ping goes unanswered and the worker is killed
        after = await s.fetch("web+spin://h/pid")
        assert after.status == 200 and int(await after.text()) != first
