"""Time GNU `tar -xf` against our layer unpacker on the same tarball, interleaved, and print medians.

Usage: python bench/unpack_bench.py TARBALL [TARBALL...] [--runs N] [--dir DIR]
A compressed tarball (.gz, .zst) is timed the same way: `tar -xf` picks the decompressor from the content.
Each run extracts into a fresh directory under DIR (default /dev/shm, tmpfs, so the disk is not what is
measured) and deletes it afterwards. tar runs as a subprocess (its start-up, about 1 ms, is included);
ours runs in this process (Python start-up excluded: it is paid once per CLI command, not per layer) and
includes the sha256 diff_id that tar does not compute. Runs alternate so machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.images.unpack import open_layer, unpack_layer


def time_tar(tarball: Path, base: Path) -> float:
    dest = Path(tempfile.mkdtemp(dir=base, prefix="tar-"))
    try:
        start = time.perf_counter()
        subprocess.run(["tar", "-xf", str(tarball), "-C", str(dest)], check=True)
        return time.perf_counter() - start
    finally:
        shutil.rmtree(dest)


def time_ours(tarball: Path, base: Path) -> float:
    dest = Path(tempfile.mkdtemp(dir=base, prefix="ours-"))
    try:
        start = time.perf_counter()
        with open_layer(tarball) as stream:
            unpack_layer(stream, dest)
        return time.perf_counter() - start
    finally:
        shutil.rmtree(dest)


def time_sha256(tarball: Path) -> float:
    """The diff_id alone (sha256 of the file): the share of our time that tar does not spend."""
    digest = hashlib.sha256()
    start = time.perf_counter()
    with open(tarball, "rb", buffering=0) as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return time.perf_counter() - start


def bench(tarball: Path, runs: int, base: Path) -> float:
    """Print one table for `tarball`; return the throughput ratio (ours / tar)."""
    size = tarball.stat().st_size
    time_tar(tarball, base)  # warm the page cache, both ways
    time_ours(tarball, base)
    tar_times, our_times = [], []
    for _ in range(runs):
        tar_times.append(time_tar(tarball, base))
        our_times.append(time_ours(tarball, base))
    mb = size / 1e6
    print(f"{tarball.name} ({mb:.0f} MB), {runs} runs each into {base}, medians (MB/s of the file as stored)")
    for label, times in (("GNU tar -xf", tar_times), ("pycompose unpack", our_times)):
        med = statistics.median(times)
        print(f"  {label:<20}{med * 1000:7.0f} ms {mb / med:6.0f} MB/s   (min {min(times) * 1000:.0f} ms)")
    ratio = statistics.median(tar_times) / statistics.median(our_times)
    print(f"  throughput ratio (ours / tar): {ratio:.2f}")
    return ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tarballs", type=Path, nargs="+")
    parser.add_argument("--runs", type=int, default=int(os.environ.get("RUNS", "11")))
    parser.add_argument("--dir", type=Path, default=Path("/dev/shm"))
    args = parser.parse_args()
    ratios = [bench(tarball, args.runs, args.dir) for tarball in args.tarballs]
    plain = args.tarballs[0]
    sha = statistics.median(time_sha256(plain) for _ in range(3))
    print(f"sha256 of {plain.name} alone: {sha * 1000:.0f} ms (ours includes it, on a second thread)")
    verdict = "met" if ratios[0] >= 0.7 else "NOT met"
    print(f"target: >= 0.70 of GNU tar on {plain.name}: {verdict} ({ratios[0]:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
