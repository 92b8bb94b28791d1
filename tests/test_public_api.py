"""The public API: __all__ matches what protoreg exports, and every error derives from ProtoregError."""

from __future__ import annotations

import inspect

import protoreg
from protoreg import errors


def test_all_is_sorted_and_every_name_resolves():
    assert protoreg.__all__ == sorted(protoreg.__all__)
    for name in protoreg.__all__:
        assert getattr(protoreg, name) is not None


def test_every_error_has_the_one_root_and_a_stdlib_base():
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass)
               if issubclass(c, Exception) and c.__module__ == errors.__name__]
    assert len(classes) >= 10
    for cls in classes:
        assert issubclass(cls, errors.ProtoregError)
        if cls is not errors.ProtoregError:
            stdlib = [b for b in cls.__mro__ if b.__module__ == "builtins"
                      and b not in (Exception, BaseException, object)]
            assert stdlib, f"{cls.__name__} should also inherit a stdlib exception type"


def test_importing_protoreg_is_lazy():
    import subprocess
    import sys

    code = "import sys, protoreg; from protoreg import Response; print('pydantic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
