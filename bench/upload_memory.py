"""Benchmark: memory stays flat while a package larger than 100 MB is uploaded.

The runner's own upload path (AuthorizeFileUpload through the real client, then the OSS
PostObject of the file through `AiohttpUploader`) posts a 2 MiB package and then a 128 MiB one
to the simulator (`python -m runner sim` in another process, real keys, the policy's signature,
key, expiry and size checked, the upload spooled to disk). In this process, tracemalloc's peak
and the kernel's high-water RSS are read around each upload.

Fails (exit 1) when an upload is not stored whole, when the large upload's traced peak reaches
MAX_TRACED_SHARE of the package size, or when the process's high-water RSS grows by more than
MAX_RSS_SHARE of the package size between the small and the large upload.

    .venv/bin/python bench/upload_memory.py
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from run_memory import KEY_ID, KEY_SECRET, start_simulator, stop_simulator

from runner.dataworks.client import DataWorksClient
from runner.dataworks.credentials import Credentials
from runner.dataworks.endpoints import Endpoints
from runner.dataworks.oss import AiohttpUploader
from runner.dataworks.transport import AiohttpTransport

SMALL, LARGE = 2 * 1024**2, 128 * 1024**2
MAX_TRACED_SHARE = 0.05  # of the package: a few chunks in flight, never the file
MAX_RSS_SHARE = 0.10


@dataclass(frozen=True, slots=True)
class Upload:
    size: int
    traced_peak: int  # bytes
    rss_high_water: int  # bytes, the process's maximum so far
    seconds: float


def write_package(path: Path, size: int) -> None:
    block = os.urandom(1024 * 1024)
    with path.open("wb") as out:
        for _ in range(size // len(block)):
            out.write(block)


def rss_high_water() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


async def upload(url: str, path: Path, size: int) -> Upload:
    async with (
        AiohttpTransport(limit=4) as transport,
        AiohttpUploader(connect_to=url, allow_loopback=True) as uploader,
    ):
        client = DataWorksClient(transport, Credentials(KEY_ID, KEY_SECRET), Endpoints(url))
        grant = await client.authorize_file_upload("cn-hangzhou")
        tracemalloc.start()
        began = time.perf_counter()
        sent = await uploader.upload(grant, path, timeout=30.0)
        seconds = time.perf_counter() - began
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert sent == size
    return Upload(size, peak, rss_high_water(), seconds)


def stored(url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{url}/_sim/stats", timeout=5) as answer:
        stats = json.load(answer)
    return {"uploads": stats["uploads_stored"], "bytes": stats["upload_bytes"]}


def main() -> int:
    process, url = start_simulator()
    try:
        with tempfile.TemporaryDirectory() as folder:
            small, large = Path(folder) / "small.zip", Path(folder) / "large.zip"
            write_package(small, SMALL)
            write_package(large, LARGE)
            first = asyncio.run(upload(url, small, SMALL))
            second = asyncio.run(upload(url, large, LARGE))
            sim = stored(url)
    finally:
        stop_simulator(process)
    for run in (first, second):
        mib = run.size / 1024**2
        print(
            f"upload {mib:6.0f} MiB: traced peak {run.traced_peak / 1024**2:6.2f} MiB,"
            f" RSS high-water {run.rss_high_water / 1024**2:6.1f} MiB,"
            f" {mib / run.seconds:6.0f} MiB/s"
        )
    growth = second.rss_high_water - first.rss_high_water
    traced_share = second.traced_peak / LARGE
    print(
        f"large vs small: RSS high-water +{growth / 1024**2:.1f} MiB"
        f" ({growth / LARGE:.3f} of the package), traced peak {traced_share:.4f} of the package;"
        f" simulator stored {sim['uploads']} uploads, {sim['bytes']} bytes"
    )
    failures = []
    if sim != {"uploads": 2, "bytes": SMALL + LARGE}:
        failures.append(f"the simulator did not store both packages whole: {sim}")
    if traced_share >= MAX_TRACED_SHARE:
        failures.append(f"traced peak {traced_share:.3f} of the package (limit {MAX_TRACED_SHARE})")
    if growth / LARGE > MAX_RSS_SHARE:
        failures.append(f"RSS grew {growth / LARGE:.3f} of the package (limit {MAX_RSS_SHARE})")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
