"""The reference side of `missive bench models`: the same data, timed with scikit-learn and
lifetimes. Usage: sklearn_bench.py DIR KMEANS_ROWS GBM_ROWS (DIR as `missive bench models`
wrote it). Prints JSON: seconds and a detail per model."""

import json
import os
import sys
import time

import numpy as np
from sklearn.cluster import KMeans
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

directory, kmeans_rows, gbm_rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = {}

x = np.fromfile(os.path.join(directory, "kmeans.f64"), dtype="<f8").reshape(kmeans_rows, 8)
t = time.perf_counter()
km = KMeans(n_clusters=8, n_init=1, init="k-means++", max_iter=300, tol=1e-4, random_state=1).fit(x)
out["kmeans"] = {
    "seconds": time.perf_counter() - t,
    "detail": f"{km.n_iter_} iterations, inertia {km.inertia_:.4e}",
}

x = np.fromfile(os.path.join(directory, "gbm_x.f64"), dtype="<f8").reshape(gbm_rows, 30)
y = np.fromfile(os.path.join(directory, "gbm_y.f64"), dtype="<f8").astype(int)
t = time.perf_counter()
gbm = HistGradientBoostingClassifier(max_iter=100, early_stopping=False, random_state=1).fit(x, y)
out["gbm"] = {
    "seconds": time.perf_counter() - t,
    "detail": f"{gbm.n_iter_} trees, training AUC {roc_auc_score(y, gbm.predict_proba(x)[:, 1]):.4f}",
}

summary = os.path.join(directory, "cdnow_summary.csv")
if os.path.exists(summary):
    import pandas as pd
    from lifetimes import BetaGeoFitter

    s = pd.read_csv(summary)
    t = time.perf_counter()
    bg = BetaGeoFitter().fit(s["frequency"], s["recency"], s["T"])
    p = bg.params_
    out["bgnbd"] = {
        "seconds": time.perf_counter() - t,
        "detail": f"r {p['r']:.4f} α {p['alpha']:.4f} a {p['a']:.4f} b {p['b']:.4f}",
    }

print(json.dumps(out))
