"""``fcinterp_fast.distributed``: rows sharded over torchrun processes (gloo on CPU) give exactly the
single-process fit, a failure on one rank stops every rank with its message, and a rank that stops
answering is named within the timeout."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import fcinterp_fast
from checks import assert_same_fit, assert_same_memberships
from fcinterp_fast import cli, distributed

WORKER = Path(__file__).with_name("distributed_worker.py")
REPO = Path(__file__).resolve().parents[1]


def torchrun(jobs: list[dict], tmp_path: Path, nproc: int = 2, backend: str = "gloo") -> subprocess.CompletedProcess:
    spec = tmp_path / "jobs.json"
    spec.write_text(json.dumps(jobs))
    return torchrun_argv([str(WORKER), str(spec), backend], tmp_path, nproc)


def torchrun_argv(argv: list[str], tmp_path: Path, nproc: int) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node nproc ARGV`` with this checkout importable."""
    return python(["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *argv], tmp_path)


def python(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``python ARGV`` in ``cwd`` with this checkout importable, one OpenMP thread a process."""
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=600, env=_env(), cwd=cwd)


def _env(**variables: str) -> dict[str, str]:
    """This environment with this checkout importable, one OpenMP thread a process, and ``variables``."""
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path, **variables}


@pytest.fixture()
def outside_torchrun(monkeypatch):
    """None of the variables torchrun sets for its processes."""
    for variable in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(variable, raising=False)


def shallow_then_deep(K: int, D: int) -> torch.Tensor:
    """First half: rows of +-1 (no split below the root); second half: Gaussian rows (deep chains).
    Rank 0 of two then trims its chains to 2 columns while rank 1 keeps more."""
    g = torch.Generator().manual_seed(0)
    W = torch.randn(K, D, generator=g) * 0.05
    W[: K // 2] = torch.randint(0, 2, (K // 2, D), generator=g) * 2.0 - 1
    return W.half()


def test_two_gloo_ranks_give_the_single_process_fit(tmp_path):
    cases = {
        "chain": (shallow_then_deep(1001, 64), {"max_memory": 64 * 324 * 97}),  # odd K, several blocks a rank
        "full-mean": (shallow_then_deep(300, 48), {"tree": "full", "depth": 3, "root": "mean"}),
        "one-row": (shallow_then_deep(3, 48)[2:], {}),  # rank 0 has no rows at all
    }
    for _, options in cases.values():
        options["device"] = "cpu"  # bit-for-bit needs the same device (files go to a GPU if any)
    assert fcinterp_fast.fit(cases["chain"][0][:500], backend="torch").nodes == ["+", "-"]
    jobs = []
    for name, (W, options) in cases.items():
        save_file({"head.weight": W}, str(tmp_path / f"{name}.safetensors"))
        jobs.append(
            {"path": str(tmp_path / f"{name}.safetensors"), "options": options, "out": str(tmp_path / f"{name}.pt")}
        )
    run = torchrun(jobs, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    for job in jobs:
        sharded = torch.load(job["out"])
        single = fcinterp_fast.fit(job["path"], backend="torch", **job["options"])
        assert sharded.pop("backend") == "torch"
        # rank 0 knows what every rank read, so its masks check every row they read again
        assert torch.equal(sharded.pop("crc32"), single.source.fingerprint.crc32)
        assert_same_fit(sharded, single)


def test_a_bad_row_on_one_rank_stops_every_rank(tmp_path):
    W = shallow_then_deep(200, 32)
    W[150, 3] = float("nan")  # in rank 1's shard
    save_file({"head.weight": W}, str(tmp_path / "bad.safetensors"))
    run = torchrun(
        [{"path": str(tmp_path / "bad.safetensors"), "options": {}, "out": str(tmp_path / "x.pt")}], tmp_path
    )
    assert run.returncode != 0
    assert "ValueError: row 150 of the head contains NaN or infinite values" in run.stderr
    assert "the distributed fit failed on rank 1: ValueError: row 150" in run.stderr  # rank 0's error
    assert not (tmp_path / "x.pt").exists()


def test_cli_fit_distributed_writes_the_single_process_tables(tmp_path):
    """`fcinterp fit --distributed` under torchrun: rank 0 alone reports, with the tables of a plain fit."""
    save_file({"head.weight": shallow_then_deep(301, 48)}, str(tmp_path / "head.safetensors"))
    common = [
        "fit",
        "--weights",
        str(tmp_path / "head.safetensors"),
        "--backend",
        "torch",
        "--device",
        "cpu",
        "--classes",
        "0",
        "300",
        "--max-memory",
        "64K",
    ]
    run = torchrun_argv(
        ["-m", "fcinterp_fast.cli", *common, "--distributed", "--dist-backend", "gloo", "--out", "sharded"], tmp_path, 2
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("report: ") == 1 and "fitted " in run.stdout
    single = python(["-m", "fcinterp_fast.cli", *common, "--out", "single"], tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    for table in ("nodes.csv", "ald.csv"):
        assert (tmp_path / "sharded" / table).read_bytes() == (tmp_path / "single" / table).read_bytes(), table


def test_cli_fit_distributed_checks_out_on_rank_zero_before_the_fit(tmp_path):
    """Only rank 0 writes: it checks --out before any rank fits, and every rank stops if it cannot."""
    save_file({"head.weight": shallow_then_deep(40, 16)}, str(tmp_path / "head.safetensors"))
    (tmp_path / "file").write_text("")
    argv = ["-m", "fcinterp_fast.cli", "fit", "--weights", "head.safetensors", "--distributed"]
    run = torchrun_argv([*argv, "--dist-backend", "gloo", "--out", "file/report"], tmp_path, 2)
    assert run.returncode != 0
    assert "fcinterp fit: error: [Errno 20] cannot write into the folder file/report: Not a directory" in run.stderr
    assert "the distributed fit failed on rank 0: NotADirectoryError" in run.stderr  # rank 1's error
    assert "fitted " not in run.stdout


def test_cli_fit_distributed_outside_torchrun(tmp_path, outside_torchrun, capsys):
    save_file({"head.weight": torch.randn(4, 32)}, str(tmp_path / "head.safetensors"))
    code = cli.main(
        ["fit", "--weights", str(tmp_path / "head.safetensors"), "--distributed", "--out", str(tmp_path / "o")]
    )
    assert code == 2 and "launch with `torchrun --nproc-per-node N" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_fit_sharded_outside_a_process_group():
    with pytest.raises(RuntimeError, match="needs an initialised torch.distributed process group"):
        distributed.fit_sharded(torch.randn(4, 8))


def test_process_group_outside_torchrun(outside_torchrun):
    with pytest.raises(
        RuntimeError, match=r"RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT missing here\): launch with `torchrun"
    ):
        with distributed.process_group():
            pass
    with pytest.raises(ValueError, match="unknown distributed backend 'mpi'"):
        with distributed.process_group("mpi"):
            pass
    with pytest.raises(ValueError, match="timeout must be a finite number of seconds > 0, got 0"):
        with distributed.process_group(timeout=0):
            pass


@pytest.mark.parametrize("stopped", [1, 0])
def test_a_stopped_rank_is_named_within_the_timeout(tmp_path, stopped):
    """Rank ``stopped`` stops itself (SIGSTOP) as its fit starts: the other one fails after
    ``--timeout 3`` (not torch's 30 minutes) naming it. Plain processes given torchrun's variables
    stand in for torchrun, which would give a stopped process 30 s to end before killing it."""
    save_file({"head.weight": shallow_then_deep(40, 16)}, str(tmp_path / "head.safetensors"))
    fit = ["fit", "--weights", "head.safetensors", "--distributed", "--dist-backend", "gloo", "--timeout", "3"]
    with socket.socket() as probe:  # a free port for rank 0's store
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    ranks = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "cli", str(stopped), *fit, "--out", "out"],
            env=_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=port),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    alive = ranks[1 - stopped]
    start = time.monotonic()
    try:
        _, err = alive.communicate(timeout=90)
    finally:
        for rank in ranks:
            rank.kill()  # SIGKILL ends a stopped process too
            rank.communicate()
    assert time.monotonic() - start < 60  # start-up, a tiny fit and the 3 s wait
    assert alive.returncode == 1, err[-3000:]  # not the user's mistake: traceback, exit status 1
    named = "rank 1 did not answer within 3 s" if stopped == 1 else "rank 0 did not confirm within 3 s"
    assert f"RuntimeError: {named}" in err, err[-3000:]


@pytest.mark.parametrize("rows", [0, 1, 5, 1001])
@pytest.mark.parametrize("world", [1, 2, 3, 7])
def test_shards_cover_every_row_once_in_order(rows, world):
    shards = [distributed.shard(rows, rank, world) for rank in range(world)]
    assert shards[0][0] == 0 and shards[-1][1] == rows
    assert all(a[1] == b[0] for a, b in itertools.pairwise(shards))
    sizes = [stop - start for start, stop in shards]
    assert max(sizes) - min(sizes) <= 1


def test_distributed_arguments():
    from fcinterp_fast.cli import fit as fit_command

    parser = argparse.ArgumentParser()
    fit_command.add_arguments(parser)
    chosen = lambda args: {k: v for k, v in vars(args).items() if k in ("distributed", "dist_backend", "timeout")}  # noqa: E731
    assert chosen(parser.parse_args([])) == {
        "distributed": False,
        "dist_backend": "auto",
        "timeout": distributed.DEFAULT_TIMEOUT,
    }
    assert chosen(parser.parse_args(["--distributed", "--dist-backend", "gloo", "--timeout", "7.5"])) == {
        "distributed": True,
        "dist_backend": "gloo",
        "timeout": 7.5,
    }
    with pytest.raises(SystemExit):
        parser.parse_args(["--dist-backend", "mpi"])


@pytest.mark.gpu
def test_nccl_rank_fits_on_its_gpu(tmp_path):
    W = shallow_then_deep(1001, 64)
    save_file({"head.weight": W}, str(tmp_path / "head.safetensors"))
    job = {
        "path": str(tmp_path / "head.safetensors"),
        "options": {"max_memory": 64 * 324 * 97},
        "out": str(tmp_path / "nccl.pt"),
    }
    run = torchrun([job], tmp_path, nproc=1, backend="nccl")
    assert run.returncode == 0, run.stderr[-3000:]
    sharded, single = torch.load(job["out"]), fcinterp_fast.fit(W, backend="torch")
    assert sharded["count"].device.type == "cpu"
    assert_same_memberships(
        sharded, single, rtol=1e-10, atol=1e-12
    )  # memberships exact on any device (docs/spec.md section 2)
