"""OS-level sandbox for handler workers: applied by the worker to itself, first thing, single-threaded.

Layers, in order: close inherited descriptors; a new user + network namespace; rlimits; ``no_new_privs``;
Landlock (filesystem, TCP, scoping); seccomp-BPF. Each degrades gracefully: a layer the kernel lacks is reported
inactive with the reason (and logged), unless the host listed it in ``SandboxPolicy.required``, in which case
:class:`~protoreg.errors.SandboxError` says which layer, why, and what to change. See docs/sandbox.md.
"""

from __future__ import annotations

from protoreg.sandbox.apply import apply_sandbox
from protoreg.sandbox.inherit import close_fds, scrubbed_env
from protoreg.sandbox.policy import LAYERS, LayerStatus, SandboxPolicy, SandboxReport, default_read_paths
from protoreg.sandbox.probe import probe

__all__ = ["LAYERS", "LayerStatus", "SandboxPolicy", "SandboxReport", "apply_sandbox", "close_fds",
           "default_read_paths", "probe", "scrubbed_env"]
