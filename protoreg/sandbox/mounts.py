"""The worker's filesystem: a fresh mount namespace whose root holds only what the worker may use.

What bubblewrap does for Flatpak, done in-process: a small tmpfs becomes the new root; the Python installation,
the bundle and a few system files are bind-mounted into it read-only, ``nosuid`` and ``nodev``; the extension's data
directory read-write, ``nosuid``, ``nodev`` and ``noexec``; ``/dev/null``, ``/dev/zero``, ``/dev/random`` and
``/dev/urandom`` alone under ``/dev``; then ``pivot_root`` and the host's tree is detached. Every path keeps its
host spelling (symlinks along it are recreated), so ``sys.path`` and the audit hook's paths stay valid. Nothing
else exists: no ``/proc``, ``/sys``, ``/run``, ``/tmp`` or home, so a pathname unix socket, a stat of a host file,
a ``readlink`` or an inotify watch outside these paths meets ENOENT.

Sources are cloned with ``open_tree(OPEN_TREE_CLONE)`` before the tmpfs is mounted (so a source under the tmpfs
mount point stays reachable) and made read-only with ``mount_setattr(AT_RECURSIVE)`` before they are attached, so
no moment exists where a writable bind is visible. Needs Linux 5.12 (``mount_setattr``) and the ``namespaces``
layer (CAP_SYS_ADMIN over a new mount namespace, held by the process that created the user namespace).

Why in-process and not bubblewrap: a warm spare worker is started before it knows which extension it will serve,
and bubblewrap fixes the mount table when it execs the program. docs/sandbox.md compares the two, with the
measured cost of each.
"""

from __future__ import annotations

import ctypes
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

from protoreg.sandbox._libc import (
    AT_EMPTY_PATH,
    AT_FDCWD,
    AT_RECURSIVE,
    MNT_DETACH,
    MOUNT_ATTR_NODEV,
    MOUNT_ATTR_NOEXEC,
    MOUNT_ATTR_NOSUID,
    MOUNT_ATTR_RDONLY,
    MOVE_MOUNT_F_EMPTY_PATH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    OPEN_TREE_CLOEXEC,
    OPEN_TREE_CLONE,
    SYS_MOUNT_SETATTR,
    SYS_MOVE_MOUNT,
    SYS_OPEN_TREE,
    SYS_PIVOT_ROOT,
    check,
    mount,
    syscall,
    umount2,
)

__all__ = ["DEVICES", "SYSTEM_FILES", "build_root"]

#: Read-only system files a Python worker may need: the dynamic loader's cache (ctypes and extension modules
#: load shared libraries lazily), the local time zone, and the MIME table (``mimetypes``).
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/etc/mime.types")
#: Character devices bound into the new /dev (harmless ones: sinks and entropy).
DEVICES = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom")
#: Where the new root's tmpfs is mounted before pivot_root (inside the worker's namespace only).
_WORKDIRS = ("/tmp", "/mnt", "/run", "/var/tmp", "/media", "/srv")  # noqa: S108 - inside our namespace only
_READ_ONLY = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV
_READ_WRITE = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64),
                ("userns_fd", ctypes.c_uint64)]


@dataclass
class _Plan:
    binds: list[tuple[str, int, bool]] = field(default_factory=list)  # (path, cloned tree fd, is a directory)
    symlinks: dict[str, str] = field(default_factory=dict)            # path -> link target, as on the host
    skipped: list[str] = field(default_factory=list)

    def close(self) -> None:
        for _, fd, _ in self.binds:
            os.close(fd)
        self.binds.clear()


def _clone(path: str, attrs: int) -> int:
    """A detached copy of the mount tree at ``path`` with ``attrs`` set on every mount in it."""
    fd = check(syscall(SYS_OPEN_TREE, ctypes.c_int(AT_FDCWD), os.fsencode(path),
                       ctypes.c_uint(OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE)), f"open_tree({path})")
    attr = _MountAttr(attrs, 0, 0, 0)
    try:
        check(syscall(SYS_MOUNT_SETATTR, ctypes.c_int(fd), b"", ctypes.c_uint(AT_EMPTY_PATH | AT_RECURSIVE),
                      ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))), f"mount_setattr({path})")
    except OSError:
        os.close(fd)
        raise
    return fd


def _real_path(path: str, symlinks: dict[str, str]) -> str:
    """Resolve ``path`` like the kernel, recording each symlink met on the way so it can be recreated."""
    current = "/"
    for part in path.strip("/").split("/"):
        if not part or part == ".":
            continue
        candidate = os.path.join(current, part)
        if os.path.islink(candidate):
            symlinks[candidate] = os.readlink(candidate)
            current = os.path.realpath(candidate)
        else:
            current = os.path.normpath(candidate)
    return current


def _within(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _plan(read_paths: Iterable[str], write_paths: Iterable[str]) -> _Plan:
    plan = _Plan()
    reads: list[tuple[str, bool]] = []
    for path in (*read_paths, *SYSTEM_FILES):
        real = _real_path(os.path.abspath(path), plan.symlinks)
        try:
            mode = os.stat(real).st_mode
        except OSError:
            plan.skipped.append(path)
            continue
        reads.append((real, stat.S_ISDIR(mode)))
    kept: list[str] = []
    try:
        for real, is_dir in sorted(set(reads), key=lambda r: (r[0].count("/"), r[0])):
            if _within(real, kept):  # already visible through a bound ancestor
                continue
            kept.append(real)
            plan.binds.append((real, _clone(real, _READ_ONLY), is_dir))
        for path in write_paths:
            real = _real_path(os.path.abspath(path), plan.symlinks)
            if not os.path.isdir(real):
                plan.skipped.append(path)
                continue
            plan.binds.append((real, _clone(real, _READ_WRITE), True))
        for dev in DEVICES:
            try:
                plan.binds.append((dev, _clone(dev, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC), False))
            except OSError:
                plan.skipped.append(dev)
    except BaseException:
        plan.close()
        raise
    bound = [p for p, _, _ in plan.binds]
    plan.symlinks = {p: t for p, t in plan.symlinks.items() if not _within(p, bound) or p in bound}
    for p in bound:  # a bound path is never also a symlink
        plan.symlinks.pop(p, None)
    return plan


def _workdir() -> str:
    for candidate in _WORKDIRS:
        if os.path.isdir(candidate) and not os.path.islink(candidate):
            return candidate
    raise OSError(2, f"no directory to build the new root in (tried {', '.join(_WORKDIRS)})")


def _mountpoint(path: str, is_dir: bool) -> None:
    if os.path.lexists(path):
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if is_dir:
        os.mkdir(path)
    else:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def build_root(read_paths: Iterable[str], write_paths: Iterable[str]) -> str:
    """Replace the calling process's filesystem view with a minimal root (irreversible); returns a summary.

    Call it in a fresh mount namespace that this process's user namespace owns, before Landlock and seccomp
    (seccomp denies the mount calls afterwards).
    """
    check(mount(None, "/", None, MS_REC | MS_PRIVATE), "mount(/, MS_PRIVATE)")  # nothing propagates to the host
    plan = _plan(read_paths, write_paths)
    n_binds, n_links = len(plan.binds), len(plan.symlinks)
    try:
        base = _workdir()
        check(mount("tmpfs", base, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=1m,nr_inodes=8192"),
              f"mount(tmpfs, {base})")
        for path, fd, is_dir in plan.binds:
            target = base + path
            _mountpoint(target, is_dir)
            check(syscall(SYS_MOVE_MOUNT, ctypes.c_int(fd), b"", ctypes.c_int(AT_FDCWD), os.fsencode(target),
                          ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH)), f"move_mount({path})")
        for path, link in sorted(plan.symlinks.items()):
            target = base + path
            if not os.path.lexists(target):
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.symlink(link, target)
    finally:
        plan.close()
    os.chdir(base)
    check(syscall(SYS_PIVOT_ROOT, b".", b"."), "pivot_root")
    check(umount2(".", MNT_DETACH), "umount2(old root)")
    os.chdir("/")
    check(mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC),
          "remount / read-only")
    summary = (f"minimal root: {n_binds} bind mount(s) (read-only, nosuid, nodev; data dir read-write, "
               f"noexec), {n_links} symlink(s); no /proc, /sys, /run, /tmp or home")
    missing = [p for p in plan.skipped if p not in SYSTEM_FILES]
    return summary + (f"; skipped missing path(s): {', '.join(missing)}" if missing else "")
