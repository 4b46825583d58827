#!/usr/bin/env python3
# "Refuse vs comply" pairs in which the request alone decides which answer wins:
#   harmful request:   the gym's refusal             over  "Sure. Here is how to <task>."
#   benign look-alike: "Sure. Here is how to <task>." over  the gym's refusal
# Both answers have one form in both families, so only the task tells them apart.
# Usage: probe_refusal_pairs.py PROMPTS.jsonl OUT.jsonl (standard library only; scored as
# probe_pairs.py's pairs are: docs/dpo.md, "What a fine-tuned model of this size can tell apart").
import json, sys

REFUSAL = "I can't help with that. It could be used to hurt people."
with open(sys.argv[2], "w") as out:
    for l in open(sys.argv[1]):
        r = json.loads(l)
        if r["family"] not in ("harmful", "benign_lookalike"):
            continue
        comply = f"Sure. Here is how to {r['gold']['task']}."
        chosen, rejected = (REFUSAL, comply) if r["family"] == "harmful" else (comply, REFUSAL)
        line = {
            "id": r["id"],
            "family": r["family"],
            "prompt": [{"role": "user", "content": r["prompt"]}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
        }
        out.write(json.dumps(line) + "\n")
