"""Removing a directory tree that a sandboxed worker may have shaped: no recursion, no path-length limit, and the
tree is renamed aside first so that no later reader ever sees a half-removed copy."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["remove_tree"]


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Remove ``path`` and everything below it, however deep (a worker can nest directories far past Python's
    recursion limit and PATH_MAX). Never follows symlinks. Raises OSError only when something could not be
    removed; the tree has then already been renamed aside to a hidden ``.removing-*`` sibling.
    """
    root = Path(path)
    aside = root.with_name(f".removing-{root.name}-{secrets.token_hex(4)}")
    os.rename(root, aside)
    parent_fd = os.open(aside.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # Every directory found is hoisted to the top level (a rename between two open directories), so the
        # walk keeps two descriptors open whatever the depth, and no path ever grows.
        pending = [aside.name]
        while pending:
            name = pending.pop()
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
            try:
                with os.scandir(fd) as entries:
                    names = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
                for child, is_dir in names:
                    if is_dir:
                        hoisted = f".removing-{secrets.token_hex(8)}"
                        os.rename(child, hoisted, src_dir_fd=fd, dst_dir_fd=parent_fd)
                        pending.append(hoisted)
                    else:
                        os.unlink(child, dir_fd=fd)
            finally:
                os.close(fd)
            os.rmdir(name, dir_fd=parent_fd)
    finally:
        os.close(parent_fd)
