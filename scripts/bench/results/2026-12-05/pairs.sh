cd /work/main
export MIMALLOC_PURGE_DELAY=-1 CANDLE_BARRIER_POOL_SPIN_LIMIT=0 RAYON_NUM_THREADS=2 CANDLE_NUM_THREADS=2 OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
mkdir -p target/bench/1205pairs
for i in 1 2 3; do
  for size in tiny small; do
    st=5; [ $size = tiny ] && st=20
    target/release/align bench --threads 2 --size $size --steps $st --skip-generation --skip-matmul --json target/bench/1205pairs/align_${size}_$i.json > /dev/null 2>&1
    scripts/fixtures/.venv/bin/python scripts/bench/torch_bench.py --threads 2 --size $size --steps $st --skip-generation --skip-matmul --json target/bench/1205pairs/torch_${size}_$i.json > /dev/null 2>&1
    echo "$i $size $(uptime)"
  done
done
echo DONE
