#!/usr/bin/env python3
# Linear interpolation (t in [0, 1]) or extrapolation of two checkpoints of one model:
#   θ = θ_a + t·(θ_b − θ_a), tensor by tensor (F32 only; standard library only).
# Usage: interpolate.py DIR_A DIR_B T OUT_DIR   (OUT_DIR gets DIR_B's config and tokenizer files)
# docs/dpo.md, "More levers", uses it for SFT → DPO and checkpoint averaging.
import json,struct,sys,array,shutil,os
a,b,t,out=sys.argv[1],sys.argv[2],float(sys.argv[3]),sys.argv[4]
def load(d):
    f=open(d+'/model.safetensors','rb'); n=struct.unpack('<Q',f.read(8))[0]; hb=f.read(n); h=json.loads(hb); data=f.read(); return n,hb,h,data
na,hba,ha,da=load(a); nb,hbb,hb,db=load(b)
ka={k for k in ha if k!='__metadata__'}; kb={k for k in hb if k!='__metadata__'}
assert ka==kb, ka^kb
res=bytearray(db)
for k in kb:
    assert ha[k]['dtype']==hb[k]['dtype']=='F32' and ha[k]['shape']==hb[k]['shape']
    s,e=ha[k]['data_offsets']; x=array.array('f'); x.frombytes(da[s:e])
    s2,e2=hb[k]['data_offsets']; y=array.array('f'); y.frombytes(db[s2:e2])
    res[s2:e2]=array.array('f',(p+t*(q-p) for p,q in zip(x,y))).tobytes()
os.makedirs(out,exist_ok=True)
for fn in os.listdir(b):
    if fn not in ('model.safetensors','optimizer.safetensors','trainer_state.json'): shutil.copy(b+'/'+fn,out+'/'+fn)
with open(out+'/model.safetensors','wb') as f:
    f.write(struct.pack('<Q',nb)); f.write(hbb); f.write(bytes(res))
