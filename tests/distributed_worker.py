"""Started by ``test_distributed.py`` under torchrun: fit head files sharded over the ranks.

Usage: ``torchrun ... distributed_worker.py JOBS.json BACKEND`` (gloo or nccl), JOBS a list of
``{"path", "options", "out"}``;
rank 0 saves each gathered ``HeadFit`` (node names and every field) to ``out`` with ``torch.save``.
"""
import json
import sys

import torch

from fcinterp_fast import distributed

with open(sys.argv[1]) as f:
    jobs = json.load(f)
with distributed.process_group(sys.argv[2]):
    for job in jobs:
        result = distributed.fit_sharded(job["path"], backend="torch", **job["options"])
        if result is not None:
            fields = {name: getattr(result, name) for name in ("count", "mean", "lo", "hi", "slope", "intercept", "r2")}
            fields.update({f"ald.{name}": getattr(result.ald, name) for name in ("loc", "scale", "kappa", "loglik")})
            torch.save({"nodes": result.nodes, "backend": result.backend, **fields}, job["out"])
