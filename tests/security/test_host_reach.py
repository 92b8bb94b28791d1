"""A compromised worker can't reach the host through what Landlock does not govern: pathname unix sockets, file
metadata, path metadata, System V IPC, memfds, and CPU or memory beyond its caps. Every check is made from outside
the worker: the host-side socket, file or segment is unchanged."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import socket
import stat
import time

import psutil
import pytest

import protoreg
from protoreg.testing import write_extension
from tests.security.conftest import ATTACKER, OFFERED, attack, needs, victim_still_serves

ENOENT, EPERM, EACCES, EROFS = errno.ENOENT, errno.EPERM, errno.EACCES, errno.EROFS
LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.shmat.restype = ctypes.c_void_p


@needs("seccomp")
async def test_a_pathname_unix_socket_on_the_host_is_unreachable(arena, tmp_path):
    session, _, _ = arena
    path = tmp_path / "host.sock"  # like /run/docker.sock or a D-Bus bus
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()
    listener.setblocking(False)
    try:
        out = await attack(session, "unix", path=str(path))
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing ever connected
    finally:
        listener.close()
    assert out["result"] in (EPERM, ENOENT), out  # socket() is denied; the path isn't in the worker's world either
    await victim_still_serves(session)


@needs("filesystem")
@pytest.mark.parametrize("name", ["chmod", "chown", "utime", "setxattr"])
async def test_metadata_of_a_host_file_can_not_be_changed(arena, tmp_path, name):
    session, _, _ = arena
    target = tmp_path / "host-file"
    target.write_text("host")
    os.chmod(target, 0o640)
    before = os.stat(target)
    out = await attack(session, name, path=str(target))
    assert out["result"] in (ENOENT, EPERM, EACCES, EROFS), out
    after = os.stat(target)
    assert (after.st_mode, after.st_uid, after.st_gid, after.st_mtime_ns) == \
        (before.st_mode, before.st_uid, before.st_gid, before.st_mtime_ns)
    assert os.listxattr(target) == []


@needs("seccomp")
@pytest.mark.parametrize("name", ["setuid", "filecap"])
async def test_a_worker_can_not_make_a_set_uid_or_capability_binary_in_its_data_dir(arena, name):
    session, _, _ = arena
    out = await attack(session, name)
    assert out["result"] == EPERM, out
    data_root = session.broker.data_root
    made = [p for p in data_root.rglob("*") if p.is_file()]
    assert made, "the attack wrote its file (only the metadata change was refused)"
    for path in made:
        mode = path.stat().st_mode
        assert not mode & (stat.S_ISUID | stat.S_ISGID), f"{path} got a set-id bit"
        assert "security.capability" not in os.listxattr(path)


@needs("filesystem")
async def test_stat_readlink_and_listing_reveal_nothing_of_the_host(arena, tmp_path):
    session, _, _ = arena
    secret = tmp_path / "secret-size"
    secret.write_bytes(b"x" * 12345)
    link = tmp_path / "link"
    link.symlink_to("/etc/shadow-target-name")
    assert (await attack(session, "stat", path=str(secret)))["result"] == ENOENT
    assert (await attack(session, "stat", path="/etc/shadow"))["result"] == ENOENT
    assert (await attack(session, "readlink", path=str(link)))["result"] == ENOENT
    assert (await attack(session, "stat", path="/run"))["result"] == ENOENT
    assert (await attack(session, "stat", path="/proc/1"))["result"] == ENOENT
    listing = await attack(session, "listroot")
    assert listing["result"] in (EACCES, "allowed")
    if listing["result"] == "allowed":  # without Landlock the root holds only the skeleton of the bound paths
        assert "etc" not in listing["detail"] or "shadow" not in listing["detail"]


@needs("filesystem")
async def test_the_interpreter_is_in_a_worker_root_read_only_so_a_profiler_can_sample_it(arena):
    """py-spy reads the interpreter's symbols through /proc/<pid>/root; the minimal root holds the executable and
    libpython (the worker has them mapped already), read-only, and nothing else of their directories."""
    from protoreg.sandbox.policy import interpreter_files, python_read_paths

    session, _, _ = arena
    await victim_still_serves(session)
    pid = next(w.pid for w in session.workers.workers())
    mounts = {line.split()[4]: line.split()[5] for line in open(f"/proc/{pid}/mountinfo")}
    for path in interpreter_files():
        assert os.path.isfile(f"/proc/{pid}/root{path}") and mounts[path].startswith("ro,")
        parent = os.path.dirname(path)
        bound = {os.path.basename(p) for p in interpreter_files()} | {
            p[len(parent) + 1:].split("/")[0] for p in python_read_paths() if p.startswith(parent + "/")}
        assert set(os.listdir(f"/proc/{pid}/root{parent}")) <= bound  # not the rest of bin/ or lib/


@needs("seccomp")
async def test_inotify_can_not_watch_host_directories(arena, tmp_path):
    session, _, _ = arena
    out = await attack(session, "inotify", path=str(tmp_path))
    assert out["result"] in (EPERM, ENOENT), out


def _host_shm(content: bytes) -> tuple[int, int]:
    key = 0x5052_0000 + os.getpid() % 0xFFFF
    shmid = LIBC.shmget(key, 4096, 0o1600 | 0o2000)  # IPC_CREAT | IPC_EXCL | 0600
    if shmid < 0:
        pytest.skip(f"System V shared memory is not available to the test process (errno {ctypes.get_errno()})")
    addr = LIBC.shmat(shmid, None, 0)
    ctypes.memmove(addr, content, len(content))
    return key, shmid


def _shm_segments() -> set[str]:
    with open("/proc/sysvipc/shm") as f:
        return {line.split()[1] for line in f.readlines()[1:]}


@needs("namespaces")
async def test_host_shared_memory_can_not_be_read_or_overwritten_and_none_outlives_the_worker(arena):
    session, _, _ = arena
    key, shmid = _host_shm(b"host data")
    try:
        before = _shm_segments()
        out = await attack(session, "shm", key=str(key))
        assert out["result"] in (EPERM, ENOENT), out
        hoard = await attack(session, "shm_hoard", size=str(256 * 2**20))
        assert hoard["result"] in (EPERM, ENOENT, errno.ENOSPC), hoard
        addr = LIBC.shmat(shmid, None, 0)
        assert ctypes.string_at(addr, 9) == b"host data"
        assert _shm_segments() == before  # nothing new on the host, during or after
    finally:
        LIBC.shmctl(shmid, 0, None)  # IPC_RMID


@needs("namespaces")
async def test_host_message_queues_are_invisible(arena):
    session, _, _ = arena
    key = 0x5051_0000 + os.getpid() % 0xFFFF
    qid = LIBC.msgget(key, 0o1600 | 0o2000)
    if qid < 0:
        pytest.skip("System V message queues are not available to the test process")
    try:
        out = await attack(session, "msgq", key=str(key))
        assert out["result"] in (EPERM, ENOENT), out
    finally:
        LIBC.msgctl(qid, 0, None)


@needs("seccomp")
async def test_memfds_are_denied(arena):
    session, _, _ = arena
    assert (await attack(session, "memfd"))["result"] == EPERM


@pytest.fixture
async def capped(tmp_path):
    if not OFFERED["cgroup"].active:
        pytest.skip(f"cgroup caps unavailable here: {OFFERED['cgroup'].detail}")
    reg = protoreg.Registry()
    reg.install(write_extension(tmp_path / "attacker", scheme="web+evil", script=ATTACKER, ext_id="evil@test",
                                permissions=["storage"]))
    reg.install(write_extension(tmp_path / "victim", scheme="web+victim", ext_id="victim@test", script="""
        from protoreg import Response
        async def handleRequest(request):
            return Response("victim ok")
    """))
    config = protoreg.WorkerConfig(request_timeout=20.0, sandbox_per_extension={
        "evil@test": {"cpu_max": 0.5, "memory_max": 128 * 2**20, "rlimit_as": None}})
    async with protoreg.Session(reg, config) as session:
        yield session


async def test_a_worker_can_not_use_more_cpu_than_its_cap(capped):
    session = capped
    await victim_still_serves(session)
    task = asyncio.ensure_future(session.fetch("web+evil://x/cpu?seconds=2.5"))
    for _ in range(100):
        workers = [w for w in session.workers.workers() if w.label == "evil@test"]
        if workers:
            break
        await asyncio.sleep(0.02)
    proc = psutil.Process(workers[0].pid)
    await asyncio.sleep(0.3)
    t0, c0 = time.monotonic(), sum(proc.cpu_times()[:2])
    await asyncio.sleep(1.5)
    used = (sum(proc.cpu_times()[:2]) - c0) / (time.monotonic() - t0)
    resp = await task
    assert resp.status == 200, await resp.text()
    assert used <= 0.5 * 1.25, f"the worker used {used:.2f} CPUs with a cap of 0.5"
    await victim_still_serves(session)


async def test_memory_past_the_cgroup_cap_kills_the_worker_not_the_host(capped, caplog):
    session = capped
    resp = await session.fetch("web+evil://x/bigalloc?mib=400")  # no RLIMIT_AS here: only the cgroup stops it
    assert resp.status == 502, await resp.text()
    assert "SIGKILL" in str(resp.error)
    await victim_still_serves(session)


# Scheduling: the kernel lets a process change the CPU set, policy and I/O priority of any process with the same
# owner, and the worker's user namespace maps it to the host user that runs the Session. No layer covered these.
IOPRIO_GET = {"x86_64": 252, "aarch64": 31}.get(os.uname().machine)


@needs("seccomp")
@pytest.mark.parametrize("name", ["affinity", "sched_idle", "ioprio"])
async def test_a_worker_can_not_change_how_host_processes_are_scheduled(arena, name):
    session, _, _ = arena
    host = await asyncio.create_subprocess_exec("sleep", "30")  # a host process of the Session's user
    try:
        cpus = os.sched_getaffinity(host.pid)
        ioprio = LIBC.syscall(IOPRIO_GET, 1, host.pid) if IOPRIO_GET else None
        out = await attack(session, name, pid=str(host.pid), cpu=str(min(cpus)))
        assert out["result"] == EPERM, out
        assert os.sched_getaffinity(host.pid) == cpus
        assert os.sched_getscheduler(host.pid) == os.SCHED_OTHER
        if IOPRIO_GET:
            assert LIBC.syscall(IOPRIO_GET, 1, host.pid) == ioprio
    finally:
        host.kill()
        await host.wait()
    await victim_still_serves(session)


@needs("seccomp")
async def test_a_worker_may_still_set_its_own_affinity(arena):
    session, _, _ = arena
    out = await attack(session, "own_affinity")
    assert out["result"] == "allowed", out


# Disk: the mount namespace and Landlock say where a worker may write, not how much, and cgroups count memory, not
# disk. protoreg/sandbox/diskquota.py caps the data dir (RLIMIT_FSIZE per file, host measurements for the total).
DISK_MAX = 16 * 2**20


@pytest.fixture
async def disk_capped(tmp_path):
    reg = protoreg.Registry()
    evil = reg.install(write_extension(tmp_path / "attacker", scheme="web+evil", script=ATTACKER, ext_id="evil@test",
                                       permissions=["storage"]))
    reg.install(write_extension(tmp_path / "victim", scheme="web+victim", script="""
        from protoreg import Response
        async def handleRequest(request):
            return Response("victim ok")
    """, ext_id="victim@test"))
    config = protoreg.WorkerConfig(request_timeout=20.0, state_dir=str(tmp_path / "state"),
                                   sandbox_per_extension={"evil@test": {"disk_max": DISK_MAX}})
    async with protoreg.Session(reg, config) as session:
        yield session, session.workers.data_dir(evil)


def allocated(path) -> int:
    return sum(os.lstat(os.path.join(d, n)).st_blocks * 512 for d, _, names in os.walk(path) for n in names)


@needs("rlimits")
async def test_one_file_can_not_grow_past_the_data_dir_cap(disk_capped):
    session, data = disk_capped
    out = await attack(session, "bigfile", mib="64")
    assert out["result"] == errno.EFBIG, out
    assert (data / "big").stat().st_size <= DISK_MAX
    await victim_still_serves(session)


@needs("filesystem")
async def test_a_worker_filling_its_data_dir_is_stopped_and_no_worker_starts_until_space_is_freed(disk_capped,
                                                                                                   caplog):
    session, data = disk_capped
    # 400 MiB in 1 MiB files at ~100 MiB/s: every file is under RLIMIT_FSIZE; only the host's measurement stops it
    resp = await session.fetch("web+evil://x/fill?files=400&pause=0.01")
    assert resp.status == 502, await resp.text()
    assert "data dir's cap" in str(resp.error) and "killed" in str(resp.error)
    used = allocated(data)
    assert DISK_MAX < used < 200 * 2**20, f"{used} bytes on the host's disk with a cap of {DISK_MAX}"
    again = await session.fetch("web+evil://x/passwd")
    assert again.status == 507 and isinstance(again.error, protoreg.DataDirFull), await again.text()
    assert "Free space in" in str(again.error) and "disk_max" in str(again.error)
    await victim_still_serves(session)
    for name in os.listdir(data):  # the host frees the space: the extension runs again
        os.unlink(data / name)
    ok = await session.fetch("web+evil://x/own_affinity")
    assert ok.status == 200, await ok.text()


@needs("filesystem")
async def test_empty_files_count_against_the_data_dir_cap(disk_capped):
    """An empty file allocates no data block but takes an inode of the host's filesystem: 8 000 of them measured
    about 140 KiB on ext4 (directory blocks only), far under a 16 MiB cap, while inodes run out long before bytes do."""
    session, data = disk_capped
    resp = await session.fetch("web+evil://x/many?n=8000")  # killed part-way, or done before the next measurement
    assert resp.status == 200 or (resp.status == 502 and "data dir's cap" in str(resp.error)), await resp.text()
    for _ in range(60):  # the host's next measurement stops the worker and refuses the next one
        again = await session.fetch("web+evil://x/passwd")
        if again.status == 507:
            break
        await asyncio.sleep(0.1)
    assert again.status == 507, await again.text()
    assert len(os.listdir(data / "many")) > DISK_MAX // 4096  # over the cap in entries, none over it in bytes
