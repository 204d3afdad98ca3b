"""The metric table on constructed codes: what each metric should give and what it gives.

    python benchmarks/disentanglement_table.py [--sizes tests|dlib]

Factors are toy_sprites' (sizes 3, 3, 6, 8, 8); four codes of them, the cases of
tests/evaluation/test_disentanglement_metrics.py:
  equal     each code is one factor (plus noise far below a bin's width)
  rotated   a random rotation of the standardised factors: every code mixes every factor
  dup_drop  factor 0 twice, factors 1-3 once, factor 4 nowhere
  noise     N(0, I), nothing about the factors
`--sizes tests` (default): the test file's sizes (4000 train / 2000 test codes; 500/300
batches of 64, a variance estimate of 2000); `dlib`: disentanglement_lib's. Seed 0.
Prints a markdown table: each cell "computed (expected)", the expectation as the tests
state it; nothing is asserted here (the tests do).
"""
from __future__ import annotations

import argparse

import numpy as np

from vaecli.data import toy_sprites
from vaecli.evaluation.disentanglement import METRICS

SIZES = toy_sprites.FACTOR_SIZES
_Q = np.linalg.qr(np.random.default_rng(1).normal(size=(5, 5)))[0]


def standardized(f):
    sizes = np.array(SIZES)
    return (f - (sizes - 1) / 2.0) / np.sqrt((sizes**2 - 1) / 12.0)


CASES = {
    "equal": lambda f, rng: f + 0.01 * rng.normal(size=f.shape),
    "rotated": lambda f, rng: standardized(f) @ _Q,
    "dup_drop": lambda f, rng: f[:, [0, 0, 1, 2, 3]] + 0.01 * rng.normal(size=f.shape),
    "noise": lambda f, rng: rng.normal(size=f.shape),
}
# (row label, metric, result key) and the expected value of each case, as the tests state it.
ROWS = [
    ("MIG", "mig", "mig"), ("FactorVAE", "factor_vae", "eval_accuracy"),
    ("DCI disentanglement", "dci", "disentanglement"), ("DCI completeness", "dci", "completeness"),
    ("DCI informativeness (test)", "dci", "informativeness_test"), ("SAP", "sap", "sap"),
    ("BetaVAE", "beta_vae", "eval_accuracy"), ("modularity", "modularity", "modularity"),
    ("explicitness (test)", "modularity", "explicitness_test"),
]
EXPECTED = {
    "MIG": (">0.95", "<0.3", "0.6", "<0.02"),
    "FactorVAE": (">0.99", "—", "0.8", "<0.3 (chance 0.2)"),
    "DCI disentanglement": (">0.98", "<0.4", ">0.98", "<0.05"),
    "DCI completeness": (">0.98", "<0.4", "0.892", "<0.05"),
    "DCI informativeness (test)": (">0.99", ">0.95", "0.825", "<0.3 (chance 0.22)"),
    "SAP": (">0.3 (dlib's SVM: 0.42)", "<0.15", "3/5 of equal", "<0.03"),
    "BetaVAE": (">0.99", "—", ">0.95", "<0.3 (chance 0.2)"),
    "modularity": (">0.98", "< equal − 0.05", ">0.98", "< equal − 0.2"),
    "explicitness (test)": (">0.99", ">0.98", "0.9", "0.5"),
}
TEST_SIZES = {"mig": {"num_train": 4000}, "dci": {"num_train": 4000, "num_test": 2000},
              "sap": {"num_train": 4000, "num_test": 2000}, "modularity": {"num_train": 4000, "num_test": 2000},
              "factor_vae": {"num_train": 500, "num_eval": 300, "num_variance_estimate": 2000},
              "beta_vae": {"num_train": 500, "num_eval": 300}}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", choices=("tests", "dlib"), default="tests")
    args = ap.parse_args()
    results = {}
    for case, represent in CASES.items():
        for name, metric in METRICS.items():
            sizes = TEST_SIZES[name] if args.sizes == "tests" else dict(metric.sizes)
            results[case, name] = metric.run(represent, SIZES, seed=0, **sizes)
    print(f"| metric ({args.sizes} sizes) | " + " | ".join(CASES) + " |")
    print("|---|" + "---|" * len(CASES))
    for label, name, key in ROWS:
        cells = [f"{round(results[case, name][key], 3) + 0.0:.3f} ({want})" for case, want in zip(CASES, EXPECTED[label])]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
