"""Started by ``test_distributed.py`` under torchrun: fit head files sharded over the ranks.

Usage: ``torchrun ... distributed_worker.py JOBS.json BACKEND`` (gloo or nccl), JOBS a list of
``{"path", "options", "out"}``;
rank 0 saves each gathered ``HeadFit`` (``checks.fit_fields``: node names and every field, the
backend's name and the crc32 of every row its file source holds) to ``out`` with ``torch.save``.
"""

import json
import sys

import torch

from checks import fit_fields
from fcinterp_fast import distributed

with open(sys.argv[1]) as f:
    jobs = json.load(f)
with distributed.process_group(sys.argv[2]):
    for job in jobs:
        result = distributed.fit_sharded(job["path"], backend="torch", **job["options"])
        if result is not None:
            crc32 = result.source.fingerprint.crc32
            torch.save({"backend": result.backend, "crc32": crc32, **fit_fields(result)}, job["out"])
