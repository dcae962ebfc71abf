"""Top functions of a py-spy raw (collapsed stacks) profile, e.g. one recorded by `PROFILE=1 bench/run.sh`.

Usage: .venv/bin/python bench/profile_top.py bench/results/<stamp>/profile-ours-cold-w1-r1.txt [N]

Prints the share of samples per thread (by the stack's root frame), then the N (25) heaviest frames
by self time (leaf) and by inclusive time as % of the EVENT-LOOP thread's samples (the thread whose
stacks start at the `webhook` entry point): helper threads such as aiosqlite's worker, which py-spy
often samples as busy while it waits in `SimpleQueue.get`, are listed but not mixed in.
"""

from __future__ import annotations

import sys
from collections import Counter


def main() -> None:
    path = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    leaf: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    roots: Counter[str] = Counter()
    stacks: list[tuple[list[str], int]] = []
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if count.isdigit():
                frames = stack.split(";")
                roots[frames[0]] += int(count)
                stacks.append((frames, int(count)))
    everything = sum(roots.values())
    if not everything:
        sys.exit(f"no samples in {path}")
    loop_root = next((r for r in roots if "(webhook:" in r), roots.most_common(1)[0][0])
    print(f"{everything:,} samples; by thread (root frame):")
    for root, n in roots.most_common():
        print(f"  {n / everything:6.1%}  {root}{'  <- event loop' if root == loop_root else ''}")
    total = 0
    for frames, n in stacks:
        if frames[0] != loop_root:
            continue
        total += n
        leaf[frames[-1]] += n
        for frame in set(frames):
            incl[frame] += n
    print(f"\nevent-loop thread: {total:,} samples (shares below are of these)")
    print("\nself time (leaf frames):")
    for frame, n in leaf.most_common(top):
        print(f"  {n / total:6.1%}  {frame}")
    print("\ninclusive time:")
    for frame, n in incl.most_common(top):
        print(f"  {n / total:6.1%}  {frame}")


if __name__ == "__main__":
    main()
