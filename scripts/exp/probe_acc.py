#!/usr/bin/env python3
# Per-group share of pairs ranked right, from `align rm score --data PAIRS > SCORES` (one
# "reward_chosen reward_rejected" line per pair, in the file's order) and the pairs' `family`.
# Usage: probe_acc.py PAIRS.jsonl SCORES.txt   (standard library only; see probe_pairs.py)
import json, sys, collections

pairs = [json.loads(l) for l in open(sys.argv[1])]
rows = [l.split() for l in open(sys.argv[2]) if l[:1] in "-0123456789"]
assert len(rows) == len(pairs), (len(rows), len(pairs))
count = collections.defaultdict(lambda: [0, 0])
for p, (c, r) in zip(pairs, rows):
    count[p["family"]][0] += float(c) > float(r)
    count[p["family"]][1] += 1
for k, (w, n) in sorted(count.items()):
    print(f"{k:6s} {w}/{n} = {w / n:.3f}")
