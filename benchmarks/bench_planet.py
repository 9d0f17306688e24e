"""Planet side by side with fastai: `bench_heldout.py --competition planet` under its old name.

    python benchmarks/bench_planet.py [options of bench_heldout.py]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_heldout import main  # noqa: E402

if __name__ == "__main__":
    main(["--competition", "planet", *sys.argv[1:]])
