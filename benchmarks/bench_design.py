"""Design building at 1M rows with a pandas Categorical of 50,000 levels (issue 10's target: <= 0.3 s).

No peer: this times mixedpy's formula -> (X, y, term codes and matrices) stage alone, with one BLAS
thread as inside lmer (threads.controls_threads), median of 15 builds.  Run it idle and with
`python3 -c "while True: pass"` keeping a core busy.
"""
import time, numpy as np, pandas as pd, warnings
warnings.simplefilter("ignore")
from mixedpy.formula.design import build_design
rng = np.random.default_rng(0); n = 1_000_000
lev = np.array([f"g{i:05d}" for i in range(50_000)])
df = pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n),
                   "g": pd.Categorical(lev[rng.integers(0, 50_000, n)], categories=lev)})
from threadpoolctl import threadpool_limits
ts = []
for _ in range(15):
    with threadpool_limits(1):
        t = time.perf_counter(); build_design("y ~ x + (1 | g)", df); ts.append(time.perf_counter() - t)
print("design building 1M rows, 50,000-level Categorical: median %.3f s, min %.3f s" % (sorted(ts)[7], min(ts)))
