"""One process of a two-process sweep (tests/test_distributed.py starts two of these)."""

import sys

import particles as pt
from particles import distributed


def main():
    port, count, index, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    distributed.initialize(f"127.0.0.1:{port}", count, index, timeout=60)
    axes = {"lr": [0.5, 2.0, 8.0], "corr": [0.1, 0.6, 0.9], "n": [3], "seed": [0, 1]}
    result = pt.sweep("equicorrelated", axes, 40, chunk_size=4, batch_size=2, checkpoint=out + ".partial.npz")
    if distributed.is_main():
        result.save(out)


if __name__ == "__main__":  # pytest --doctest-modules imports this file
    main()
