"""Print the GPU benchmark JSONs (benchmarks/results/*_gpu.json) as one short table."""

import json
import sys

for path in sys.argv[1:]:
    run = json.load(open(path))
    print(f"\n{run['op']} on {run['device']} ({run['commit']})")
    for r in sorted(run["results"], key=lambda r: (r["group"], r["median_ms"])):
        print(f"  {r['group'][:38]:38s} {r['label'][:30]:30s} {r['median_ms']:10.3f} ms"
              f" {r.get('gb_per_s', 0):8.1f} GB/s  err {r.get('max_rel_error', float('nan')):.1e}"
              f"{'  bitwise' if r.get('bitwise_equal') else ''}")
