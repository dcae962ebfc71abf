"""Top functions of a py-spy raw (collapsed stacks) profile, e.g. one recorded by `PROFILE=1 bench/run.sh`.

Usage: .venv/bin/python bench/profile_top.py bench/results/<stamp>/profile-ours-cold-w1-r1.txt [N]

Prints the N (25) heaviest frames by self time (leaf) and by inclusive time, as % of all samples of
the server's threads (the event loop thread and helper threads such as aiosqlite's are both counted).
"""

from __future__ import annotations

import sys
from collections import Counter


def main() -> None:
    path = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    leaf: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = stack.split(";")
            leaf[frames[-1]] += n
            for frame in set(frames):
                incl[frame] += n
    if not total:
        sys.exit(f"no samples in {path}")
    print(f"{total:,} samples")
    print("\nself time (leaf frames):")
    for frame, n in leaf.most_common(top):
        print(f"  {n / total:6.1%}  {frame}")
    print("\ninclusive time:")
    for frame, n in incl.most_common(top):
        print(f"  {n / total:6.1%}  {frame}")


if __name__ == "__main__":
    main()
