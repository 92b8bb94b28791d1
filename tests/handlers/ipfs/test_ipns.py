"""IPNS names and records: the spec's six vectors, generated records for each verification step, and ipns:// through
sandboxed workers (import, publish, legacy names, the trustless record form, recursion)."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from multiformats import CID, multibase

import protoreg
from protoreg.cli import main
from tests.conftest import CONFORMANCE
from tests.handlers.ipfs.conftest import core, import_record
from tests.handlers.ipfs.helpers import IPFS_BUNDLE

ipns = core.ipns
VECTORS = CONFORMANCE / "ipns"
EXPECTED = {
    "v1": ("signature", None),
    "v1-v2": (None, "/ipfs/bafkqaddwgevxmmraojswg33smq"),
    "v1-v2-broken-v1-value": ("fields", None),
    "v1-v2-broken-signature-v2": ("signature", None),
    "v1-v2-broken-signature-v1": (None, "/ipfs/bafkqahtwgevxmmrao5uxi2bamjzg623fnyqhg2lhnzqxi5lsmuqhmmi"),
    "v2": (None, "/ipfs/bafkqadtwgiww63tmpeqhezldn5zgi"),
}


def vectors() -> dict[str, tuple[str, bytes]]:
    if not VECTORS.is_dir():
        pytest.skip(f"conformance data {VECTORS} is absent: clone the project with ../shared beside it")
    out = {}
    for p in VECTORS.glob("*.ipns-record"):
        name, variant = p.name.split(".", 1)[0].split("_", 1)
        out[variant] = (name, p.read_bytes())
    return out


@pytest.mark.parametrize("variant", sorted(EXPECTED))
def test_spec_vectors(variant):
    name_text, raw = vectors()[variant]
    name, canonical = ipns.parse_name(name_text)
    assert canonical
    step, value = EXPECTED[variant]
    if step is None:
        record = ipns.verify_record(name, raw)
        assert (record.value, record.sequence, record.ttl_seconds) == (value, 0, 1800)
    else:
        with pytest.raises(ipns.RecordRefused) as err:
            ipns.verify_record(name, raw)
        assert err.value.step == step


def key():
    return ed25519.Ed25519PrivateKey.generate()


def test_generated_records_each_step():
    k = key()
    name, raw = ipns.create_record(k, "/ipfs/bafkqaddwgevxmmraojswg33smq", 5)
    assert ipns.verify_record(name, raw).sequence == 5
    # expired
    _, old = ipns.create_record(k, "/ipfs/bafkqaddwgevxmmraojswg33smq", 6,
                                validity=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    with pytest.raises(ipns.RecordRefused, match="expired") as err:
        ipns.verify_record(name, old)
    assert err.value.step == "validity"
    # over 10 KiB (a long value, correctly signed)
    _, big = ipns.create_record(k, "/ipfs/bafkqaddwgevxmmraojswg33smq/" + "a" * 6000, 7)
    assert len(big) > ipns.MAX_RECORD
    with pytest.raises(ipns.RecordRefused) as err:
        ipns.verify_record(name, big)
    assert err.value.step == "size"
    # signed by another key than the name's
    other, raw2 = ipns.create_record(key(), "/ipfs/bafkqaddwgevxmmraojswg33smq", 9)
    with pytest.raises(ipns.RecordRefused) as err:
        ipns.verify_record(name, raw2)
    assert err.value.step == "signature"
    assert ipns.verify_record(other, raw2)
    # V2 only (no V1 fields) is fine
    _, v2 = ipns.create_record(k, "/ipfs/bafkqaddwgevxmmraojswg33smq", 1, v1_fields=False)
    assert ipns.verify_record(name, v2).sequence == 1


def test_ordering_sequence_then_validity():
    k = key()
    name, a = ipns.create_record(k, "/ipfs/bafkqaddwgevxmmraojswg33smq", 1, lifetime=dt.timedelta(days=9))
    _, b = ipns.create_record(k, "/ipfs/bafkqaddwgevxmmraojswg33smq", 2, lifetime=dt.timedelta(days=1))
    _, c = ipns.create_record(k, "/ipfs/bafkqaddwgevxmmraojswg33smq", 2, lifetime=dt.timedelta(days=3))
    ra, rb, rc = (ipns.verify_record(name, x) for x in (a, b, c))
    assert rb.better_than(ra) and not ra.better_than(rb)
    assert rc.better_than(rb) and not rb.better_than(rc)


def test_rsa_key_carried_in_record_and_hashed_to_name():
    priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = priv.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    key_pb = ipns.PublicKeyMsg(Type=0, Data=der).SerializeToString()
    name = ipns.name_for_public_key(key_pb)
    assert core.ipns._split_multihash(name.mh)[0] == 0x12  # sha2-256: the key is too long to inline
    import cbor2

    data = cbor2.dumps({"Value": b"/ipfs/bafkqaddwgevxmmraojswg33smq", "Validity": ipns.format_time(
        dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)), "ValidityType": 0, "Sequence": 3,
        "TTL": 10**9}, canonical=True)
    sig = priv.sign(ipns.SIGNATURE_PREFIX + data, padding.PKCS1v15(), hashes.SHA256())
    raw = ipns.IpnsEntry(data=data, signatureV2=sig, pubKey=key_pb).SerializeToString()
    assert ipns.verify_record(name, raw).sequence == 3
    wrong = ipns.IpnsEntry(data=data, signatureV2=sig,
                           pubKey=ipns.PublicKeyMsg(Type=0, Data=der + b"x").SerializeToString())
    with pytest.raises(ipns.RecordRefused, match="does not hash to the name"):
        ipns.verify_record(name, wrong.SerializeToString())


def test_name_forms():
    k = key()
    name, _ = ipns.create_record(k, "/ipfs/bafkqaddwgevxmmraojswg33smq", 0)
    assert name.text.startswith("k51") and len(name.text) <= 63
    assert ipns.parse_name(name.text) == (name, True)
    b32 = str(CID("base32", 1, "libp2p-key", name.mh))
    assert ipns.parse_name(b32) == (name, False)
    peer_id = multibase.encode(name.mh, "base58btc")[1:]
    assert peer_id.startswith("12D3Koo") and ipns.parse_name(peer_id) == (name, False)
    with pytest.raises(ipns.InvalidName):
        ipns.parse_name("bafkqaddwgevxmmraojswg33smq")  # a raw CID, not a key
    with pytest.raises(ipns.InvalidName, match="DNSLink"):
        ipns.parse_name("example.org")


# -- through the handler -----------------------------------------------------------------------------------------
@pytest.fixture
def ipns_env(tmp_path):
    reg = protoreg.Registry()
    ext = reg.install(IPFS_BUNDLE)
    return reg, ext, tmp_path / "state"


async def test_imported_vector_serves_its_value(ipns_env):
    reg, ext, state = ipns_env
    name_text, raw = vectors()["v1-v2"]
    import_record(ext, state, raw, name_text)
    async with protoreg.Session(reg, state_dir=str(state)) as s:
        resp = await s.fetch(f"ipns://{name_text}/")
        assert (resp.status, await resp.read()) == (200, b"v1+v2 record")
        assert resp.headers["Cache-Control"] == "public, max-age=1800"
        assert resp.headers["X-Ipfs-Path"] == f"/ipns/{name_text}/"
        rec = await s.fetch(f"ipns://{name_text}/?format=ipns-record")
        assert (rec.status, await rec.read()) == (200, raw)
        assert rec.headers["Content-Type"] == "application/vnd.ipfs.ipns-record"
        assert rec.headers["Content-Disposition"].startswith("attachment")
        assert rec.headers["Cache-Control"] == "public, max-age=1800"
        rec2 = await s.fetch(f"ipns://{name_text}/", headers={"Accept": "application/vnd.ipfs.ipns-record"})
        assert await rec2.read() == raw
        missing = await s.fetch(f"ipns://{ipns.create_record(key(), '/ipfs/bafkqaddwgevxmmraojswg33smq', 0)[0]}/")
        assert missing.status == 404 and b"no IPNS record" in await missing.read()


def test_import_refuses_each_bad_vector(ipns_env):
    _, ext, state = ipns_env
    for variant in ("v1", "v1-v2-broken-v1-value", "v1-v2-broken-signature-v2"):
        name_text, raw = vectors()[variant]
        with pytest.raises(ipns.RecordRefused):
            import_record(ext, state, raw, name_text)


async def test_stored_bad_record_answers_5xx_naming_the_step(ipns_env, tmp_path):
    reg, ext, state = ipns_env
    name_text, raw = vectors()["v1-v2-broken-signature-v2"]
    from tests.handlers.ipfs.helpers import data_dir_for

    d = data_dir_for(ext, state) / "ipns"
    d.mkdir(parents=True)
    (d / f"{name_text}.ipns-record").write_bytes(raw)  # tampered on disk: verified again on every read
    async with protoreg.Session(reg, state_dir=str(state)) as s:
        resp = await s.fetch(f"ipns://{name_text}/")
        assert resp.status == 502 and b"signature check" in await resp.read()


async def test_publish_legacy_redirect_recursion_and_subpaths(ipns_env, tmp_path, capsys):
    reg, ext, state = ipns_env
    from tests.handlers.ipfs.helpers import ipfs_core, store_for

    with (Path(__file__).parents[3] / "handlers" / "ipfs" / "demo-site.car").open("rb") as f:
        root = ipfs_core().cids.v1_base32(ipfs_core().car.import_car(f, store_for(ext, state)).roots[0])
    assert await asyncio.to_thread(main, ["keygen", str(tmp_path / "k.pem")]) == 0
    assert await asyncio.to_thread(main, ["ipns", "publish", "--profile", str(state), "--key", str(tmp_path / "k.pem"),
                 f"/ipfs/{root}/docs"]) == 0
    out = capsys.readouterr().out
    name_text = out.split("ipns://", 1)[1].split("/", 1)[0]
    assert "(sequence 0," in out
    assert await asyncio.to_thread(main, ["ipns", "publish", "--profile", str(state), "--key", str(tmp_path / "k.pem"),
                 f"/ipfs/{root}/docs"]) == 0
    assert "(sequence 1," in capsys.readouterr().out
    # a second name pointing at the first: /ipns/ values resolve recursively
    assert await asyncio.to_thread(main, ["keygen", str(tmp_path / "k2.pem")]) == 0
    assert await asyncio.to_thread(main, ["ipns", "publish", "--profile", str(state), "--key", str(tmp_path / "k2.pem"),
                 f"/ipns/{name_text}"]) == 0
    outer = capsys.readouterr().out.split("ipns://", 1)[1].split("/", 1)[0]
    name, _ = ipns.parse_name(name_text)
    async with protoreg.Session(reg, state_dir=str(state)) as s:
        page = await s.fetch(f"ipns://{name_text}/verification.html")
        assert page.status == 200 and b"<" in await page.read()
        assert page.headers["Cache-Control"] == "public, max-age=300"
        index = await s.fetch(f"ipns://{outer}/verification.html")
        assert index.status == 200
        legacy = str(CID("base32", 1, "libp2p-key", name.mh))
        redirect = await s.fetch(f"ipns://{legacy}/verification.html?x=1", redirect="manual")
        assert redirect.status == 301
        assert redirect.headers["Location"] == f"ipns://{name_text}/verification.html?x=1"


def test_cli_import_runs_in_the_extensions_worker_and_refuses_bad_records(ipns_env, tmp_path, capsys):
    _, ext, state = ipns_env
    for variant, ok in (("v1-v2", True), ("v1-v2-broken-signature-v2", False), ("v1", False)):
        name_text, raw = vectors()[variant]
        f = tmp_path / f"{name_text}_{variant}.ipns-record"
        f.write_bytes(raw)
        assert main(["ipns", "import", "--profile", str(state), str(f)]) == (0 if ok else 1)
        out = capsys.readouterr()
        if ok:
            assert "signature verified" in out.out and "sequence 0" in out.out
        else:
            assert "signature check" in out.err
    from tests.handlers.ipfs.helpers import data_dir_for

    name_text, raw = vectors()["v1-v2"]
    assert (data_dir_for(ext, state) / "ipns" / f"{name_text}.ipns-record").read_bytes() == raw
    # the same command through the generic seam; an older-or-equal record is kept out
    f = tmp_path / "again.ipns-record"
    f.write_bytes(raw)
    assert main(["ext", "run", "--profile", str(state), "-e", str(IPFS_BUNDLE), "-i", str(f), "ipfs@protoreg",
                 "ipns", "import", "--name", name_text]) == 1
    assert "as new as or newer" in capsys.readouterr().err
    assert main(["ext", "run", "--profile", str(state), "-e", str(IPFS_BUNDLE), "ipfs@protoreg", "nope"]) == 1
    assert "has no command 'nope'" in capsys.readouterr().err


async def test_commands_are_not_reachable_from_web_content(ipns_env):
    reg, _, state = ipns_env
    async with protoreg.Session(reg, state_dir=str(state)) as s:
        with pytest.raises(protoreg.UnknownScheme):
            await s.fetch("protoreg-cmd-ipns://run/")
    from protoreg.policy.schemes import check_scheme

    assert check_scheme("protoreg-cmd-ipns") is not None  # no manifest can claim a command scheme
