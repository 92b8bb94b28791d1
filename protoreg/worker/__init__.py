"""Worker processes: the child side (``bootstrap``, ``loader``, ``serve``) and the parent side (``process``,
``pool``, ``manager``). ``python -m protoreg.worker FD`` is the child's entry point."""
