"""scikit-learn's side of the clustering check (crates/cli/tests/it/model.rs).

Usage: cluster_reference.py CDNOW_master.txt OUT_DIR

Turns the full CDNOW log into one row of RFM features per customer (days since the last
purchase at 1998-06-30, purchase days, total spend, mean spend per purchase day), writes them
to OUT_DIR/rfm.csv and the first 2,000 customers to OUT_DIR/rfm2000.csv, then prints as JSON
what scikit-learn finds on the standardized features: K-Means' inertia, DBSCAN's labels and
Ward's and average linkage's labels on the 2,000.
"""

import json
import sys

import numpy as np
import pandas as pd
from sklearn.cluster import DBSCAN, AgglomerativeClustering, KMeans
from sklearn.preprocessing import StandardScaler

log, out = sys.argv[1], sys.argv[2]
t = pd.read_csv(log, sep=r"\s+", skiprows=1, header=None, names=["customer", "day", "items", "spend"])
t["day"] = pd.to_datetime(t["day"].astype(str), format="%Y%m%d")
days = t.groupby(["customer", "day"], as_index=False)["spend"].sum()
end = pd.Timestamp("1998-06-30")
rfm = days.groupby("customer").agg(
    last=("day", "max"), frequency=("day", "count"), monetary=("spend", "sum")
)
rfm["recency_days"] = (end - rfm["last"]).dt.days
rfm["mean_spend"] = (rfm["monetary"] / rfm["frequency"]).round(2)
rfm = rfm[["recency_days", "frequency", "monetary", "mean_spend"]].reset_index()
rfm.to_csv(f"{out}/rfm.csv", index=False)
small = rfm.head(2000)
small.to_csv(f"{out}/rfm2000.csv", index=False)

x = StandardScaler().fit_transform(rfm.drop(columns=["customer"]).to_numpy(dtype=float))
xs = StandardScaler().fit_transform(small.drop(columns=["customer"]).to_numpy(dtype=float))
kmeans = KMeans(n_clusters=5, n_init=10, random_state=0).fit(x)
dbscan = DBSCAN(eps=0.3, min_samples=10).fit(x)
ward = AgglomerativeClustering(n_clusters=5, linkage="ward").fit(xs)
average = AgglomerativeClustering(n_clusters=5, linkage="average").fit(xs)
print(
    json.dumps(
        {
            "customers": int(len(rfm)),
            "kmeans_inertia": float(kmeans.inertia_),
            "dbscan": [int(v) for v in dbscan.labels_],
            "ward": [int(v) for v in ward.labels_],
            "average": [int(v) for v in average.labels_],
        }
    )
)
