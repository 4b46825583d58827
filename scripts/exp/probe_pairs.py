#!/usr/bin/env python3
# "Answer vs I don't know" pairs in which the prompt's entity alone decides which answer wins:
#   fact prompt:    the right statement  over  "I don't know ..."
#   unknown name:   "I don't know ..."   over  a statement with a value drawn from another landmark
# `family` is fact, fresh or near (a near-miss of a known landmark's name), for per-group accuracy.
# Usage: probe_pairs.py PROMPTS.jsonl OUT.jsonl SEED   (a gym's prompts/train.jsonl or eval.jsonl;
# standard library only). docs/dpo.md, "What a fine-tuned model of this size can tell apart", trains
# `align rm train` on the train pairs and scores the held-out ones with `align rm score`.
import json, sys, random

recs = [json.loads(l) for l in open(sys.argv[1])]
rng = random.Random(int(sys.argv[3]))


def cap(s):
    return s[0].upper() + s[1:]


def idk(s, a):
    return {"year": f"I don't know when {s} was built.", "height": f"I don't know how tall {s} is.", "city": f"I don't know where {s} is."}[a]


def stmt(s, a, v):
    return {"year": f"{cap(s)} was built in {v}.", "height": f"{cap(s)} is {v} meters tall.", "city": f"{cap(s)} is in {v}."}[a]


values = {}
for r in recs:
    if r["family"] == "fact":
        values.setdefault(r["gold"]["attribute"], []).append(r["gold"]["answer"])
with open(sys.argv[2], "w") as out:
    for r in recs:
        f, g = r["family"], r["gold"]
        if f not in ("fact", "unknown"):
            continue
        a, s = g["attribute"], g["subject"]
        if f == "fact":
            chosen, rejected, group = stmt(s, a, g["answer"]), idk(s, a), "fact"
        else:
            chosen, rejected = idk(s, a), stmt(s, a, rng.choice(values[a]))
            group = "near" if g.get("near_miss_of") else "fresh"
        line = {
            "id": r["id"],
            "family": group,
            "prompt": [{"role": "user", "content": r["prompt"]}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
        }
        out.write(json.dumps(line) + "\n")
