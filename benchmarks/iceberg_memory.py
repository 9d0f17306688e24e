"""Peak memory and time of converting a real-size iceberg test.json (8,424 records, about 1 GB).

    python benchmarks/iceberg_memory.py [--records 8424] [--dir DIR] [--keep]

Generates `test.json` with the real schema and size in a temporary folder (records cycle through
a pool of generated chips, so generation is quick), then converts it in a fresh process, exactly
as `prepare` does (competitions.iceberg -> kaggletools.data.arrays), under `/usr/bin/time -v`, and
prints the peak resident memory and the seconds. A second fresh process that only imports the
same modules gives the fixed cost of the interpreter, numpy, pandas and torch imports.
Install `time` with `apt-get install -y time` if it is missing (the script then falls back to
getrusage, which reports the same peak RSS).
"""
from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REAL_RECORDS = 8424


def generate(path: Path, n: int, seed: int = 0, pool: int = 48) -> int:
    """Write a test.json of `n` records shaped like the real one; return its size in bytes."""
    from kaggletools.competitions import iceberg

    rng = np.random.default_rng(seed)
    chips = []
    for k in range(pool):
        b1, b2 = iceberg.synthetic_chip(k % 2, 38.0, rng)
        chips.append((json.dumps(iceberg._dB(b1)), json.dumps(iceberg._dB(b2))))
    ids = iceberg.hex_ids(n, rng)
    with open(path, "w") as f:
        f.write("[")
        for i, rid in enumerate(ids):
            b1, b2 = chips[i % pool]
            angle = round(float(rng.uniform(30, 46)), 4)
            f.write(f'{", " if i else ""}{{"id": "{rid}", "band_1": {b1}, "band_2": {b2}, "inc_angle": {angle}}}')
        f.write("]")
    return path.stat().st_size


def convert(data_dir: Path) -> None:
    """The measured step: what `prepare` does for test.json."""
    from kaggletools.competition import registry as competition

    table = competition.get("iceberg").table(data_dir, "test")
    print(json.dumps({"items": len(table.meta), "npy_bytes": table.path.stat().st_size}))


def imports_only() -> None:
    from kaggletools.competition import registry as competition  # noqa: F401  (the same imports as `convert`
    competition.get("iceberg")  # discovers (imports) every registered competition module


def measure(args: list[str]) -> dict:
    """Run this script with `args` in a fresh process; its peak RSS (MiB), seconds and stdout."""
    cmd = [sys.executable, __file__, *args]
    gnu_time = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    start = time.perf_counter()
    if gnu_time:
        done = subprocess.run([gnu_time, "-v", *cmd], capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stdout}\n{done.stderr}")
        peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
        return {"peak_rss_mib": peak_kb / 1024, "seconds": seconds, "stdout": done.stdout.strip(),
                "command": " ".join([gnu_time, "-v", *cmd])}
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stdout}\n{done.stderr}")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # max over children so far
    return {"peak_rss_mib": peak_kb / 1024, "seconds": seconds, "stdout": done.stdout.strip(),
            "command": " ".join(cmd) + "  (getrusage: /usr/bin/time not found)"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--records", type=int, default=REAL_RECORDS)
    p.add_argument("--dir", type=Path, help="working folder (default: a temporary one, removed after)")
    p.add_argument("--keep", action="store_true", help="keep the generated files")
    p.add_argument("--convert", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--imports-only", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.convert:
        return convert(a.convert)
    if a.imports_only:
        return imports_only()

    work = Path(a.dir or tempfile.mkdtemp(prefix="iceberg-memory-"))
    try:
        work.mkdir(parents=True, exist_ok=True)
        source = work / "test.json"
        start = time.perf_counter()
        size = generate(source, a.records)
        print(f"generated {source}: {a.records} records, {size / 1e9:.2f} GB in {time.perf_counter() - start:.0f} s")
        base = measure(["--imports-only"])
        run = measure(["--convert", str(work)])
        print(f"command: {run['command']}")
        print(f"result: {run['stdout']}")
        print(f"imports only:      peak RSS {base['peak_rss_mib']:7.0f} MiB, {base['seconds']:5.1f} s")
        print(f"convert + imports: peak RSS {run['peak_rss_mib']:7.0f} MiB, {run['seconds']:5.1f} s "
              f"({size / 1e6 / run['seconds']:.0f} MB/s of JSON)")
        again = measure(["--convert", str(work)])
        print(f"second run (cache hit): peak RSS {again['peak_rss_mib']:7.0f} MiB, {again['seconds']:5.1f} s")
    finally:
        if not a.keep and not a.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
