#!/usr/bin/env python3
"""fdatasync latency of small appends, growing a file vs. writing into zeros written ahead.

The measurement behind the WAL's zeros ahead (src/engine/wal.rs, `Writer::zero_ahead`): a commit
that grows its file makes fdatasync also record the new size. Usage:
    python3 bench/fsync_latency.py [DIR] [--writes N] [--bytes B]
DIR must be on the disk under test (default: the current directory); the files are removed.
"""
import argparse
import os
import time


def run(path, zeroed, writes, size):
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC)
    try:
        if zeroed:
            os.write(fd, b"\0" * (writes * size + (1 << 20)))
            os.fsync(fd)
        record = b"x" * size
        times = []
        for i in range(writes):
            start = time.perf_counter()
            os.pwrite(fd, record, i * size)
            os.fdatasync(fd)
            times.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        os.unlink(path)
    times.sort()
    return times[len(times) // 2] * 1e3, times[int(len(times) * 0.99)] * 1e3


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir", nargs="?", default=".")
    p.add_argument("--writes", type=int, default=2000)
    p.add_argument("--bytes", type=int, default=600)
    args = p.parse_args()
    for round_ in (1, 2):
        for zeroed in (False, True):
            p50, p99 = run(os.path.join(args.dir, "fsync-latency.tmp"), zeroed, args.writes, args.bytes)
            kind = "into zeros" if zeroed else "appending "
            print(f"round {round_} {kind}: p50 {p50:.3f} ms  p99 {p99:.3f} ms")


if __name__ == "__main__":
    main()
