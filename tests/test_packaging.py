"""The source distribution stands on its own: it carries the C++ sources, the behaviour contract and
the whole test suite, builds without deprecation warnings, and pytest collects the suite from it."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> tuple[Path, str]:
    """The unpacked sdist and the build's output."""
    pytest.importorskip("build")
    out = tmp_path_factory.mktemp("sdist")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (archive,) = out.glob("fcinterp_fast-*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(out, filter="data")
    (unpacked,) = (p for p in out.iterdir() if p.is_dir())
    return unpacked, built.stdout + built.stderr


@pytest.mark.slow
def test_sdist_carries_sources_docs_and_tests(sdist):
    unpacked, log = sdist
    for name in ("LICENSE", "README.md", "docs/spec.md", "csrc/fit.cpp", "csrc/fit.h", "csrc/bindings.cpp",
                 "fcinterp_fast/py.typed", "tests/conftest.py", "tests/oracle.py", "tests/checks.py",
                 "tests/strategies.py", "tests/cam_oracle.py", "tests/test_fit_oracle.py"):  # fmt: skip
        assert (unpacked / name).is_file(), f"{name} is missing from the sdist"
    tests_here = {p.name for p in (ROOT / "tests").glob("*.py")}
    assert {p.name for p in (unpacked / "tests").glob("*.py")} == tests_here
    assert not list(unpacked.rglob("*.so")), "a built extension leaked into the sdist"
    assert "Deprecat" not in log and "deprecat" not in log, log  # e.g. license metadata in an old form
    metadata = (unpacked / "PKG-INFO").read_text()
    assert "License-Expression: Apache-2.0" in metadata and "License-File: LICENSE" in metadata


@pytest.mark.slow
def test_pytest_collects_the_suite_from_the_unpacked_sdist(sdist):
    unpacked, _ = sdist
    env = {**os.environ, "PYTHONPATH": str(unpacked)}  # the sdist's own package (no extension built)
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=unpacked,
        capture_output=True,
        text=True,
        env=env,
    )
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    count = int(collected.stdout.strip().splitlines()[-1].split()[0])
    assert count > 500, collected.stdout[-500:]
    assert f"{unpacked}/fcinterp_fast" in subprocess.run(
        [sys.executable, "-c", "import fcinterp_fast; print(fcinterp_fast.__file__)"],
        cwd=unpacked, capture_output=True, text=True, env=env,
    ).stdout  # fmt: skip
