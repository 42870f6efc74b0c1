"""Profiles every notebook kernel that `make reproduce` starts, for ``bench/profile_notebooks.py --reproduce``.

Python imports ``sitecustomize`` at start-up from the first folder on ``PYTHONPATH`` that has one. With this folder
there and ``PREFKIT_PROFILE_DIR`` set, an IPython kernel process samples its main thread's stack (where the cells run)
with the categories of ``profile_notebooks.py`` and rewrites ``$PREFKIT_PROFILE_DIR/<pid>.json`` every few seconds:
the wall time since the kernel started, the samples per category, and the notebook's ``out_dir``. Any other process
(papermill, the scheduler) does nothing. Rewriting the file, rather than writing it at exit, keeps the profile of a
kernel that is shut down without running exit handlers.
"""

import os
import sys

if os.environ.get("PREFKIT_PROFILE_DIR") and "ipykernel_launcher" in " ".join(sys.orig_argv):
    import json
    import threading
    import time
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from profile_notebooks import StackSampler

    _out = Path(os.environ["PREFKIT_PROFILE_DIR"]) / f"{os.getpid()}.json"
    _t0 = time.perf_counter()
    _sampler = StackSampler(threading.main_thread().ident)
    _sampler.start()

    def _out_dir() -> str | None:
        ip = sys.modules.get("IPython")
        shell = ip.get_ipython() if ip is not None else None
        return None if shell is None else shell.user_ns.get("out_dir")

    def _write_every(seconds: float = 2.0) -> None:
        while True:
            time.sleep(seconds)
            record = {"out_dir": _out_dir(), "wall_s": time.perf_counter() - _t0, "counts": dict(_sampler.counts)}
            tmp = _out.with_suffix(".tmp")
            tmp.write_text(json.dumps(record))
            os.replace(tmp, _out)

    threading.Thread(target=_write_every, daemon=True).start()
