"""Seeds written compactly: consecutive runs as ranges, then the count (`0–255 (256)`)."""

from __future__ import annotations


def compact_seeds(seeds) -> str:
    """e.g. [0, 1, 2, 3, 7, 9, 10, 11] -> `0–3,7,9–11 (8)`; ranges of three or more collapse."""
    ordered = sorted({int(s) for s in seeds})
    parts, start = [], 0
    for i in range(1, len(ordered) + 1):
        if i == len(ordered) or ordered[i] != ordered[i - 1] + 1:
            run = ordered[start:i]
            parts.append(f"{run[0]}\u2013{run[-1]}" if len(run) >= 3
                         else ",".join(map(str, run)))
            start = i
    return f"{','.join(parts)} ({len(ordered)})"
