"""An allocation-heavy Python workload with deterministic output.

Builds and drops millions of objects of many sizes: dicts of tuples, lists
and strings; a graph of objects with reference cycles left to the cycle
collector; big strings and bytes split and joined; lists of floats sorted;
sets and dict resizes. Prints one line per phase with a checksum of what it
computed, so a run under another allocator can be compared byte for byte.

Used by ffi/tests/real_programs.sh (output must match with and without
libgomalloc.so) and benches/preload/run.sh (timed).

Usage: python3 workload.py [scale]    (default 3; time grows linearly)
"""

import gc
import hashlib
import random
import sys


def digest(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(repr(p).encode())
    return h.hexdigest()[:16]


def dicts(scale):
    total = 0
    for r in range(scale):
        d = {}
        for i in range(150_000):
            key = f"key-{i}-{r}"
            d[key] = (i, [i, i * 2, str(i)], {"x": i, "y": key})
        total += sum(v[1][1] + len(v[2]["y"]) for v in d.values())
        for i in range(0, 150_000, 2):
            del d[f"key-{i}-{r}"]
        total += len(d)
        del d
    return total


class Node:
    def __init__(self, value):
        self.value = value
        self.edges = []
        self.label = "node %d" % value


def graphs(scale, rng):
    total = 0
    for _ in range(scale):
        nodes = [Node(i) for i in range(60_000)]
        for n in nodes:
            for _ in range(3):
                n.edges.append(nodes[rng.randrange(len(nodes))])
        total += sum(len(n.edges[0].label) for n in nodes)
        del nodes, n  # cycles everywhere: only the cycle collector frees them
        total += gc.collect() > 0
    return total


def text(scale, rng):
    total = 0
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    for _ in range(scale):
        parts = [rng.choice(words) * rng.randrange(1, 20) for _ in range(100_000)]
        blob = " ".join(parts)
        pieces = blob.split(" ")
        data = blob.encode()
        chunks = [data[i : i + 4096] for i in range(0, len(data), 4096)]
        total += len(pieces) + len(b"".join(chunks)) + len(blob.upper()) + len(set(pieces))
    return total


def numbers(scale, rng):
    total = 0
    for _ in range(scale):
        xs = [rng.random() for _ in range(300_000)]
        xs.sort()
        ys = sorted(xs, key=lambda v: -v)
        s = {round(v, 3) for v in xs}
        m = {i: i * 0.5 for i in range(200_000)}
        total += len(s) + len(m) + round(ys[0] * 1000) + round(sum(xs[:1000]))
    return total


def main():
    scale = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    rng = random.Random(20240601)
    print("dicts", digest(dicts(scale)))
    print("graphs", digest(graphs(scale, rng)))
    print("text", digest(text(scale, rng)))
    print("numbers", digest(numbers(scale, rng)))


if __name__ == "__main__":
    main()
