"""Builds the optional C++ extension ``fcinterp_fast._cpu`` (``backend="cpu"``) from ``csrc/``.

Everything else about the package lives in ``pyproject.toml``. The extension is optional: when
pybind11 or a C++17 compiler is missing, or the compile fails, the build prints a warning and the
package installs without it (``fcinterp_fast.backends()`` then says why ``cpu`` is unavailable).

Compiler flags are probed, not assumed: C++17, -O3, OpenMP (GCC/Clang ``-fopenmp``, Apple Clang
``-Xpreprocessor -fopenmp -lomp``, MSVC ``/openmp``), ``-ffp-contract=off`` (the kernels rely on
unfused IEEE arithmetic), and on x86-64 ``target_clones`` so one binary carries baseline, AVX2 and
AVX-512 versions of the row kernel. ``FCINTERP_NATIVE=1`` builds for this CPU only
(``-march=native``; not for wheels you distribute).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import textwrap

from setuptools import setup
from setuptools.command.build_ext import build_ext

SOURCES = ["csrc/fit.cpp", "csrc/bindings.cpp"]
HEADERS = ["csrc/fit.h", "csrc/gof.h"]

_OPENMP_SNIPPET = """
#include <omp.h>
int main() {
    int n = 0;
#pragma omp parallel for reduction(+ : n)
    for (int i = 0; i < 4; ++i) n += omp_get_thread_num() >= 0;
    return n == 4 ? 0 : 1;
}
"""
_TARGET_CLONES_SNIPPET = """
__attribute__((flatten, target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
double twice(double x) { return 2 * x; }
int main() { __builtin_cpu_init(); return __builtin_cpu_supports("x86-64-v3") < 0 || twice(1) != 2; }
"""
_PLAIN_SNIPPET = "int main() { return 0; }\n"


def _warn(message: str) -> None:
    print(textwrap.fill(f"WARNING: {message}", 100), file=sys.stderr)


class OptionalBuildExt(build_ext):
    """``build_ext`` that probes flags and never fails the install."""

    def build_extensions(self):
        compile_args, link_args, macros = self._probe_flags()
        for ext in self.extensions:
            ext.extra_compile_args = list(ext.extra_compile_args or []) + compile_args
            ext.extra_link_args = list(ext.extra_link_args or []) + link_args
            ext.define_macros = (
                list(ext.define_macros or [])
                + [("FCI_BUILD_FLAGS", '"' + " ".join(compile_args + macros).replace('"', "") + '"')]
                + [(name, None) for name in macros]
            )
        super().build_extensions()

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as error:
            _warn(
                f"building the optional C++ extension {ext.name} failed ({type(error).__name__}: {error}); "
                f"fcinterp_fast installs without it and backend='cpu' is unavailable (the 'torch' and "
                f"'reference' backends work)."
            )

    # ------------------------------------------------------------------------------- probing
    def _compiles(self, code: str, compile_args: list[str], link_args: list[str] = ()) -> bool:
        """Whether ``code`` compiles and links with these flags (the build's own compiler)."""
        tmp = tempfile.mkdtemp(prefix="fcinterp-probe-")
        try:
            source = os.path.join(tmp, "probe.cpp")
            with open(source, "w") as f:
                f.write(code)
            objects = self.compiler.compile([source], output_dir=tmp, extra_postargs=list(compile_args))
            self.compiler.link_executable(
                objects,
                "probe",
                output_dir=tmp,
                extra_postargs=list(link_args),
                target_lang="c++",
            )
            return True
        except Exception:
            return False
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _first_working(self, code: str, candidates):
        for compile_args, link_args in candidates:
            if self._compiles(code, compile_args, link_args):
                return compile_args, link_args
        return None

    def _probe_flags(self) -> tuple[list[str], list[str], list[str]]:
        """(compile args, link args, macros to define) for this compiler."""
        msvc = self.compiler.compiler_type == "msvc"
        if msvc:
            compile_args = ["/O2", "/std:c++17", "/fp:precise"]
            openmp = self._first_working(_OPENMP_SNIPPET, [(["/openmp"], [])])
            return compile_args + (openmp[0] if openmp else []), [], []

        compile_args = [
            flag
            for flag in ("-O3", "-std=c++17", "-ffp-contract=off", "-fno-math-errno")
            if self._compiles(_PLAIN_SNIPPET, [flag])
        ]
        link_args: list[str] = []
        macros: list[str] = []
        openmp = self._first_working(
            _OPENMP_SNIPPET,
            [(["-fopenmp"], ["-fopenmp"]), (["-Xpreprocessor", "-fopenmp"], ["-lomp"])],
        )
        if openmp:
            compile_args += openmp[0]
            link_args += openmp[1]
        else:
            _warn("no OpenMP found: backend='cpu' will run on one thread")
            if self._compiles(_PLAIN_SNIPPET, ["-fopenmp-simd"]):
                compile_args.append("-fopenmp-simd")
        if os.environ.get("FCINTERP_NATIVE") == "1":
            if self._compiles(_PLAIN_SNIPPET, ["-march=native"]):
                compile_args.append("-march=native")
                macros.append("FCI_NATIVE")
            else:
                _warn("FCINTERP_NATIVE=1 but the compiler rejects -march=native; building portably")
        if "FCI_NATIVE" not in macros and self._compiles(_TARGET_CLONES_SNIPPET, compile_args):
            macros.append("FCI_TARGET_CLONES")
        return compile_args, link_args, macros


def _extensions():
    try:
        from pybind11.setup_helpers import Pybind11Extension
    except ImportError as error:
        _warn(
            f"pybind11 is not installed ({error}); building fcinterp_fast without its C++ extension "
            f"(backend='cpu' unavailable). Install pybind11 and reinstall to get it."
        )
        return []
    return [
        Pybind11Extension(
            "fcinterp_fast._cpu",
            SOURCES,
            depends=HEADERS,
            include_dirs=["csrc"],
            cxx_std=17,
        )
    ]


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
