"""probe(): what the machine offers, found without restricting the caller."""

from __future__ import annotations

import os

from protoreg.sandbox import LAYERS, probe


def _status() -> dict[str, str]:
    with open("/proc/self/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def test_probe_reports_every_layer_in_order_with_a_detail():
    report = probe()
    assert [layer.name for layer in report.layers] == list(LAYERS)
    assert all(layer.detail for layer in report.layers)
    assert report.to_dict()["layers"][0] == {"name": "fds", "active": True, "detail": report.layers[0].detail}


def test_probe_leaves_the_caller_unrestricted():
    before = _status()
    netns = os.readlink("/proc/self/ns/net")
    probe()
    after = _status()
    assert (after["NoNewPrivs"], after["Seccomp"]) == (before["NoNewPrivs"], before["Seccomp"])
    assert os.readlink("/proc/self/ns/net") == netns
    with open("/etc/passwd") as f:  # no Landlock domain on us either
        assert f.read(1)
    pid = os.fork()  # and we can still fork
    if pid == 0:  # pragma: no cover - child
        os._exit(7)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 7
