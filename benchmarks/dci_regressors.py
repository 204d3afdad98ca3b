"""DCI's two importance regressors on disentanglement_lib's constructed codes: the lasso
(vaecli's default, alpha by cross-validation) against dlib's gradient-boosted trees, on ten
factors of ten values observed as they are, shuffled afresh in every row, duplicated, and
with Gaussian noise of growing scale. Prints a markdown table (docs/disentanglement.md).

    python benchmarks/dci_regressors.py [--n 1000]

Needs scikit-learn for the trees (pip install 'vaecli[disentanglement]').
"""
from __future__ import annotations

import argparse

import numpy as np

from vaecli.evaluation.disentanglement import observational as obs


def codes(rng):
    noisy = lambda s: lambda f: f + s * rng.normal(size=f.shape)
    return [("identity", lambda f: f + 0.0),
            ("shuffled in every row", lambda f: np.stack([rng.permutation(r) for r in f]) + 0.0),
            ("duplicated", lambda f: np.hstack([f, f]) + 0.0),
            *[(f"identity + N(0, {s}²)", noisy(s)) for s in (0.5, 1, 3, 10)]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1000, help="training and test points (1000: --sizes small)")
    n = p.parse_args().n
    rng = np.random.default_rng(0)
    ftr, fte = rng.integers(10, size=(n, 10)), rng.integers(10, size=(n, 10))
    print("| code | lasso D / C / I (test) | trees D / C / I (test) |\n| --- | --- | --- |")
    for name, code in codes(rng):
        a, b = code(ftr), code(fte)
        cells = []
        for regressor in ("lasso", "gbt"):
            r = obs.dci(a, ftr, b, fte, regressor=regressor)
            cells.append(f"{r['disentanglement']:.3f} / {r['completeness']:.3f} / {r['informativeness_test']:.3f}")
        print(f"| {name} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
