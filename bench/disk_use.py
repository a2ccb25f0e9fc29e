"""What jobs cost on disk, and what deleting them gives back (issue 12, "Nothing is kept forever").

Runs N trivial jobs in this process (orchestrator + local backend, as `jupyter-ext run --local`
does), then prints: the job database and its WAL, the bytes of one job's folder (and of its
executed HTML), and the database and WAL again after deleting all jobs but one.

    python bench/disk_use.py [--jobs 101] [--print-kb 20] [--concurrency 2]

`--print-kb` makes each job print that many KB (so the database has some weight, as real jobs'
outputs give it); 0 is the truly trivial job.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from jupyter_ext.backends.local import LocalBackend
from jupyter_ext.models import JobSpec
from jupyter_ext.orchestrator import Orchestrator
from jupyter_ext.store import AsyncStore, Store

KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def db_sizes(db: Path) -> dict[str, int]:
    return {"db": size(db), "wal": size(Path(f"{db}-wal"))}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="jupyter-ext-disk-"))
    root, data = work / "root", work / "data"
    root.mkdir()
    source = "x = 1 + 1\nprint(x)"
    if args.print_kb:
        source += f"\nfor i in range({args.print_kb * 1024 // 64}):\n    print('.' * 63)"
    nbformat.write(new_notebook(cells=[new_code_cell(source)], metadata=KERNEL), root / "trivial.ipynb")
    backend = LocalBackend(max_concurrent=args.concurrency)
    store = AsyncStore(Store(data / "jobs.db"))
    orch = Orchestrator(store=store, backends={"local": backend}, default_backend="local", root_dir=root, data_dir=data)
    await orch.start()
    started = time.monotonic()
    try:
        ids = []
        for _ in range(args.jobs):
            job, _ = await orch.submit(JobSpec(notebook="trivial.ipynb"), "bench")
            ids.append(job["id"])
        jobs = [await orch.wait(i) for i in ids]
        statuses = sorted({j["status"] for j in jobs})
        ran = time.monotonic() - started
        job_dir = orch.job_dir(ids[0])
        html = sorted(p.relative_to(job_dir).as_posix() for p in job_dir.rglob("*.html"))
        per_job = sum(size(orch.job_dir(i)) for i in ids) / len(ids)
        before = db_sizes(data / "jobs.db")
        artifacts = await store.artifacts(ids[0])
        for job_id in ids[1:]:
            await orch.delete(job_id, "bench")
        after = db_sizes(data / "jobs.db")
        reclaimed = await store.reclaim() if hasattr(store, "reclaim") else None  # what the server's upkeep does
        left = sum(1 for p in (data / "jobs").iterdir()) if (data / "jobs").is_dir() else 0
    finally:
        await orch.stop()
        await store.close()
    return {
        "jobs": args.jobs,
        "statuses": statuses,
        "seconds": round(ran, 1),
        "bytes_per_job_folder": round(per_job),
        "html_files_in_one_job": html,
        "html_bytes_in_one_job": sum(size(job_dir / h) for h in html),
        "artifacts_listed": [a["name"] for a in artifacts],
        "before_delete": before,
        "after_deleting_all_but_one": after,
        "after_reclaim": reclaimed,
        "job_folders_left": left,
        "work": str(work),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=101)
    parser.add_argument("--print-kb", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=2)
    os.environ.setdefault("JUPYTER_EXT_DATA_DIR", tempfile.mkdtemp(prefix="jupyter-ext-disk-home-"))
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
