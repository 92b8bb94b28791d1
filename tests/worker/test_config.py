"""protoreg/worker/config.py: settings checked when the config is made, and cpu_affinity applied to workers."""

from __future__ import annotations

import os

import pytest

from protoreg.errors import ConfigError
from protoreg.worker.config import WorkerConfig
from tests.worker.conftest import head

HELLO = """
    from protoreg import Response

    async def handleRequest(request):
        return Response("hi")
"""


def _allowed_cpus(pid: int) -> set[int]:
    """Read from outside the worker: what the kernel lets the process run on."""
    return os.sched_getaffinity(pid)


@pytest.mark.parametrize(("value", "match"), [
    (frozenset(), "non-empty set"),
    ([0, -1], "-1"),
    ({"0"}, "'0'"),
    ({True}, "True"),
    ({4096}, "names no CPU this process may use"),
])
def test_a_bad_cpu_affinity_is_a_config_error_naming_the_value(value, match):
    with pytest.raises(ConfigError, match=match):
        WorkerConfig(cpu_affinity=value)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no sched_setaffinity on this platform")
async def test_workers_run_only_on_the_chosen_cpu(manager, make_bundle):
    cpu = min(os.sched_getaffinity(0))
    m = await manager(cpu_affinity=frozenset({cpu}))
    st = await m.dispatch(make_bundle(HELLO), head("web+t://host/"), b"")
    assert (await st.head)[0] == 200
    workers = m.workers()
    assert workers, "no worker was started"
    for worker in workers:  # the spare too: it becomes the next extension's worker
        assert _allowed_cpus(worker.pid) == {cpu}


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no sched_setaffinity on this platform")
async def test_workers_are_not_pinned_by_default(manager, make_bundle):
    m = await manager()
    st = await m.dispatch(make_bundle(HELLO), head("web+t://host/"), b"")
    assert (await st.head)[0] == 200
    for worker in m.workers():
        assert _allowed_cpus(worker.pid) == os.sched_getaffinity(0)
