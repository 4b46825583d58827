#!/usr/bin/env python3
# Reweight the gym's families in preference-pair files (each line's `family` field):
#   reweight_families.py OUT IN1 [IN2 ...] -- FAMILY=MULT [FAMILY=MULT ...]
# Each pair is written int(MULT) times, plus once more with probability MULT - int(MULT)
# (so MULT 0.5 keeps about half); then all lines are shuffled. Seeded: the same files give the same output.
# docs/dpo.md, "More levers", uses it.
import json,sys,random
args=sys.argv[1:]; i=args.index('--'); out=args[0]; ins=args[1:i]; w={k:float(v) for k,v in (a.split('=') for a in args[i+1:])}
rng=random.Random(0); rows=[]
for f in ins:
    for l in open(f):
        d=json.loads(l); m=w.get(d.get('family'),1.0)
        n=int(m)+(1 if rng.random()<m-int(m) else 0)
        rows+= [l]*n
rng.shuffle(rows)
open(out,'w').writelines(rows); print(out,len(rows))
