"""The `implicit` side of `missive bench recs`: fits AlternatingLeastSquares (CPU, conjugate
gradient, float32, all cores) on the matrix missive wrote and prints the seconds per
iteration as JSON.

    implicit_bench.py TRAIN FACTORS ITERATIONS
"""

import json
import sys
import time

import numpy as np
from scipy.sparse import csr_matrix


def main(path, factors, iterations):
    with open(path) as f:
        users, items, nnz = (int(x) for x in f.readline().split())
        data = np.loadtxt(f, dtype=np.float64, ndmin=2)
    m = csr_matrix(
        (data[:, 2].astype(np.float32), (data[:, 0].astype(np.int64), data[:, 1].astype(np.int64))),
        shape=(users, items),
    )
    assert m.nnz == nnz, (m.nnz, nnz)
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(factors=factors, iterations=iterations, random_state=1)
    start = time.perf_counter()
    model.fit(m, show_progress=False)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds_per_iteration": seconds / iterations, "threads": "all"}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
