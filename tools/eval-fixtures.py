#!/usr/bin/env python3
"""Reference values for the regression metrics (packages/core/tests/fixtures/metrics-cases.json).

Run with the system Python: /usr/bin/python3 tools/eval-fixtures.py
scipy is not installed on the build hosts, so the references are computed with numpy alone,
by methods independent of the TypeScript code:
  * PLCC: numpy.corrcoef (float64);
  * SRCC: Pearson of average ranks, where an item's rank is
    (#values strictly below) + (#values equal + 1) / 2, counted with numpy.searchsorted on the
    sorted array (the TypeScript code instead walks runs of ties in a sorted index order);
    this equals scipy.stats.spearmanr's definition (rankdata method='average');
  * RMSE / MAE: numpy on float64.
Constant inputs have no correlation: the fixture records null there.
Deterministic: numpy.random.default_rng(20260101).
"""
import json
import os
import numpy as np

rng = np.random.default_rng(20260101)


def avg_rank(x):
    s = np.sort(x)
    below = np.searchsorted(s, x, side="left")
    upto = np.searchsorted(s, x, side="right")
    return below + (upto - below + 1) / 2.0


def case(name, t, p):
    t = np.asarray(t, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    const = np.all(t == t[0]) or np.all(p == p[0])
    plcc = None if const else float(np.corrcoef(t, p)[0, 1])
    srcc = None if const else float(np.corrcoef(avg_rank(t), avg_rank(p))[0, 1])
    return {
        "name": name,
        "targets": t.tolist(),
        "predictions": p.tolist(),
        "expected": {
            "n": int(t.size),
            "rmse": float(np.sqrt(np.mean((p - t) ** 2))),
            "mae": float(np.mean(np.abs(p - t))),
            "plcc": plcc,
            "srcc": srcc,
            "plcc_plus": None if plcc is None else max(0.0, plcc),
        },
    }


cases = []
cases.append(case("tiny-perfect", [1, 2, 3], [1.5, 2.5, 3.5]))
cases.append(case("two-rows-negative", [1.0, 5.0], [4.0, 2.0]))
t = np.round(rng.uniform(1, 5, 40), 1)
cases.append(case("ties-ratings-one-decimal", t, np.round(t + rng.normal(0, 0.6, 40), 0)))
t = rng.uniform(1, 5, 50)
cases.append(case("negative-correlation", t, 6 - t + rng.normal(0, 0.5, 50)))
cases.append(case("heavy-ties-both", [1, 1, 1, 2, 2, 3, 3, 3, 3, 5], [2, 2, 3, 3, 3, 3, 4, 4, 1, 1]))
t = np.round(np.clip(rng.normal(4.2, 0.5, 5000), 1, 5), 1)
cases.append(case("large-n-5000", t, np.clip(0.4 * t + 2.5 + rng.normal(0, 0.3, 5000), 1, 5)))
cases.append(case("constant-predictions", [1, 2, 3, 4], [3, 3, 3, 3]))
cases.append(case("unrelated-noise", rng.uniform(1, 5, 200), rng.uniform(1, 5, 200)))

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "packages", "core", "tests", "fixtures", "metrics-cases.json")
with open(out, "w") as f:
    json.dump({"generator": "tools/eval-fixtures.py", "numpy": np.__version__, "cases": cases}, f, indent=1)
    f.write("\n")
print(f"wrote {len(cases)} cases to {os.path.normpath(out)}")
