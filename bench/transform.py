"""
The transform alone, per byte: upperecho's pure-Python UTF-8 path against
its C accelerator, on the three stream workloads' data (ASCII, the UTF-8
text corpus, random bytes), in 64 KiB reads as the server sees them.

    python3 bench/run.py --setup      # writes bench/data (the corpora)
    .venv/bin/python bench/transform.py

Best of several repeats, in ns per input byte; compare the two columns of
one run (this machine's speed moves between runs).
"""

from __future__ import annotations

import os
import sys
import timeit

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from upperecho import transform  # noqa: E402

READ = 65536


def corpora() -> dict[str, bytes]:
    data = os.path.join(HERE, "data")
    found = {"ascii": (b"the quick brown fox jumps over the lazy dog 0123\n" * 1400)}
    for name, file in (("utf8", "utf8_payload.txt"), ("binary", "binary_payload.bin")):
        path = os.path.join(data, file)
        if not os.path.exists(path):
            sys.exit(f"{path} is missing: run python3 bench/run.py --setup first")
        with open(path, "rb") as f:
            found[name] = f.read()
    return found


def perByte(function: object, data: bytes, repeat: int) -> float:
    reads = [data[i : i + READ] for i in range(0, min(len(data), 16 * READ), READ)]
    size = sum(map(len, reads))

    def run() -> None:
        for r in reads:
            function(r, False)  # type: ignore[operator]

    best = min(timeit.repeat(run, number=5, repeat=repeat))
    return best / 5 / size * 1e9


def main() -> None:
    paths = [("pure Python", transform._pureUtf8)]
    if transform._accelerator is not None:
        paths.append(("C accelerator", transform._accelerator.upper_utf8))
    else:
        print(f"(no accelerator: {transform.IMPLEMENTATION})")
    print("ns per byte  " + "  ".join(f"{name:>14}" for name, _ in paths))
    for name, data in corpora().items():
        cells = [perByte(f, data, 7) for _, f in paths]
        print(f"{name:11}  " + "  ".join(f"{c:14.2f}" for c in cells))


if __name__ == "__main__":
    main()
