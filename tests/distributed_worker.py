"""Started by ``test_distributed.py`` under torchrun, or as plain processes given torchrun's variables.

* ``distributed_worker.py JOBS.json BACKEND`` (gloo or nccl), JOBS a list of ``{"path", "options",
  "out"}``: fit each head file sharded over the ranks; rank 0 saves each gathered ``HeadFit``
  (``checks.fit_fields``: node names and every field, the backend's name and the crc32 of every
  row its file source holds) to ``out`` with ``torch.save``.
* ``distributed_worker.py cli STOPPED_RANK ARG ...``: ``fcinterp ARG ...``, where rank STOPPED_RANK
  stops itself (SIGSTOP) as its fit starts: a rank that no longer answers.
"""

import json
import os
import signal
import sys

import torch

from checks import fit_fields
from fcinterp_fast import cli, distributed
from fcinterp_fast.api import FitPlan

if sys.argv[1] == "cli":
    if os.environ["RANK"] == sys.argv[2]:
        fit_rows = FitPlan.fit_rows

        def stop_then_fit(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGSTOP)
            return fit_rows(*args, **kwargs)

        FitPlan.fit_rows = stop_then_fit  # type: ignore[method-assign]
    sys.exit(cli.main(sys.argv[3:]))

with open(sys.argv[1]) as f:
    jobs = json.load(f)
with distributed.process_group(sys.argv[2]):
    for job in jobs:
        result = distributed.fit_sharded(job["path"], backend="torch", **job["options"])
        if result is not None:
            crc32 = result.source.fingerprint.crc32
            torch.save({"backend": result.backend, "crc32": crc32, **fit_fields(result)}, job["out"])
