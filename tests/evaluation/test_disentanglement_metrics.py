"""Disentanglement metrics on constructed codes whose answers are known, and their pieces
against closed forms. Factor sizes are toy_sprites' (3, 3, 6, 8, 8); sample sizes are small
(4000 train, 2000 test; 500/300 batches) so the whole file runs in seconds."""
import json

import jax.numpy as jnp
import numpy as np
import pytest

from vaecli.data import toy_sprites
from vaecli.evaluation import disentanglement as dis
from vaecli.evaluation.disentanglement import interventional as iv
from vaecli.evaluation.disentanglement import observational as obs
from vaecli.evaluation.disentanglement import probes, sampling
from vaecli.errors import UsageError

SIZES = toy_sprites.FACTOR_SIZES
N_TRAIN, N_TEST = 4000, 2000
SMALL = {"num_train": 500, "num_eval": 300}  # interventional batches of 64
_Q = np.linalg.qr(np.random.default_rng(1).normal(size=(5, 5)))[0]  # a fixed random rotation


def standardized(f):
    sizes = np.array(SIZES)
    return (f - (sizes - 1) / 2.0) / np.sqrt((sizes**2 - 1) / 12.0)


# Each case maps factor rows (n, 5) and a Generator to codes (n, D).
CASES = {
    # Each code is one factor (plus noise far below a bin's width).
    "equal": lambda f, rng: f + 0.01 * rng.normal(size=f.shape),
    # Every code mixes every factor; no information is lost.
    "rotated": lambda f, rng: standardized(f) @ _Q,
    # Factor 0 twice, factors 1-3 once, factor 4 nowhere.
    "dup_drop": lambda f, rng: f[:, [0, 0, 1, 2, 3]] + 0.01 * rng.normal(size=f.shape),
    # Nothing about the factors.
    "noise": lambda f, rng: rng.normal(size=f.shape),
}


@pytest.fixture(scope="module")
def samples():
    """(codes_train, factors_train, codes_test, factors_test) of each case, same factors."""
    rng = np.random.default_rng(0)
    ftr, fte = sampling.sample_factors(SIZES, N_TRAIN, rng), sampling.sample_factors(SIZES, N_TEST, rng)
    return {name: (g(ftr, rng), ftr, g(fte, rng), fte) for name, g in CASES.items()}


# ------------------------------------------------------------------ pieces against closed forms
def test_discretize_is_numpy_histogram_then_digitize():
    x = np.random.default_rng(2).normal(size=(500, 3)).astype(np.float32)
    x[:, 2] = 1.5  # a constant column: np.histogram's range is then (1.0, 2.0)
    want = np.stack([np.digitize(x[:, i], np.histogram(x[:, i], 20)[1][:-1]) - 1 for i in range(3)], 1)
    np.testing.assert_array_equal(np.asarray(obs.discretize(x, 20)), want)


def test_mutual_info_of_a_hand_computed_joint():
    # Counts of (code, factor): [[2, 0], [0, 2], [2, 2]] over 8 points.
    code = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    factor = np.array([0, 0, 1, 1, 1, 1, 0, 0])
    joint = np.array([[2, 0], [0, 2], [2, 2]]) / 8.0
    pc, pf = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    want = np.sum(joint[nz] * np.log(joint[nz] / (pc * pf)[nz]))  # = log(2) / 2
    assert want == pytest.approx(np.log(2) / 2)
    got = obs.mutual_info(code[:, None], factor[:, None])
    assert got.shape == (1, 1) and got[0, 0] == pytest.approx(want, abs=1e-6)
    # A factor with itself: its entropy; against an unrelated column: 0.
    h = obs.entropy(np.stack([code, factor], 1))
    np.testing.assert_allclose(h, [-(0.25 * np.log(0.25) * 2 + 0.5 * np.log(0.5)), np.log(2)])
    assert obs.mutual_info(factor[:, None], factor[:, None])[0, 0] == pytest.approx(np.log(2), abs=1e-6)
    assert obs.mutual_info(np.array([[0], [1], [0], [1]]), np.array([[0], [0], [1], [1]]))[0, 0] == pytest.approx(0, abs=1e-7)


def test_roc_auc_counts_pairs_and_halves_ties():
    auc = lambda s, p: float(probes.roc_auc(jnp.array(s, jnp.float32), jnp.array(p)))
    # Positives 1, 3; negatives 2, 0: three of the four (positive, negative) pairs are ordered.
    assert auc([1, 3, 2, 0], [True, True, False, False]) == pytest.approx(0.75)
    assert auc([5, 5, 5, 5], [True, False, True, False]) == pytest.approx(0.5)
    assert auc([0, 1], [False, True]) == 1.0 and auc([0, 1], [True, False]) == 0.0


def test_lasso_soft_thresholds_an_orthonormal_design_and_splits_duplicates():
    rng = np.random.default_rng(3)
    n = 400
    x = np.linalg.qr(rng.normal(size=(n, 4)))[0] * np.sqrt(n)  # x.T x / n = I
    y = x @ np.array([[1.0], [-0.3], [0.05], [0.0]]) + 0.1 * rng.normal(size=(n, 1))
    c = x.T @ y / n
    want = np.sign(c) * np.maximum(np.abs(c) - 0.1, 0)  # the lasso's closed form when G = I
    np.testing.assert_allclose(np.asarray(probes.lasso(x.astype(np.float32), y.astype(np.float32), 0.1)), want, atol=1e-4)
    dup = np.concatenate([x[:, :1], x], 1).astype(np.float32)
    w = np.asarray(probes.lasso(dup, y.astype(np.float32), 0.1))
    assert w[0, 0] == pytest.approx(w[1, 0], rel=1e-5) and w[0, 0] + w[1, 0] == pytest.approx(want[0, 0], abs=1e-4)


# ------------------------------------------------------------------ metrics on constructed codes
def test_mig(samples):
    r = {name: obs.mig(s[0], s[1]) for name, s in samples.items()}
    # A code equal to its factor, binned injectively, carries all H(factor); the runner-up
    # carries only the plug-in estimator's bias, about (bins-1)(values-1)/2N nats.
    assert r["equal"]["mig"] > 0.95
    assert r["rotated"]["mig"] < 0.3  # each factor spread over five codes
    per = np.array(r["dup_drop"]["per_factor"])
    # Two equal copies of factor 0 leave no gap; factor 4 is in no code; 1-3 as when equal.
    assert per[0] < 0.02 and per[4] < 0.02 and (per[1:4] > 0.95).all()
    assert r["dup_drop"]["mig"] == pytest.approx(0.6, abs=0.03)
    assert r["noise"]["mig"] < 0.02


def test_dci(samples):
    r = {name: obs.dci(*s) for name, s in samples.items()}
    eq, rot, dup, noise = r["equal"], r["rotated"], r["dup_drop"], r["noise"]
    assert eq["disentanglement"] > 0.98 and eq["completeness"] > 0.98 and eq["informativeness_test"] > 0.99
    # A rotation mixes everything but loses nothing: a linear read-out still recovers each factor.
    assert rot["disentanglement"] < 0.4 and rot["completeness"] < 0.4 and rot["informativeness_test"] > 0.95
    # Duplicate and drop: every code still matters for one factor only (D = 1); factor 0's
    # importance splits evenly over two codes, so its completeness is 1 - log 2 / log 5, and
    # the dropped factor has no importance: C = (1 - log 2 / log 5 + 3) / 4 = 0.892.
    imp = np.array(dup["importance"])
    assert dup["disentanglement"] > 0.98
    assert dup["completeness"] == pytest.approx((1 - np.log(2) / np.log(5) + 3) / 4, abs=0.02)
    assert imp[0, 0] == pytest.approx(imp[1, 0], rel=0.1) and imp[:, 4].sum() < 0.01
    # Informativeness: four factors exact, the dropped one at the rate of its mean value (1/8).
    assert dup["informativeness_test"] == pytest.approx((4 + 1 / 8) / 5, abs=0.03)
    # Noise: cross-validation keeps the zero model, so D = C = 0, and each factor is predicted
    # by its mean: chance, (1/3 + 1/3 + 1/6 + 1/8 + 1/8) / 5 = 0.22.
    assert noise["disentanglement"] < 0.05 and noise["completeness"] < 0.05
    assert noise["informativeness_test"] < 0.3
    assert eq["protocol"]["regressor"] == "lasso" and len(eq["protocol"]["alpha"]) == 5
    assert noise["protocol"]["alpha"] == [max(noise["protocol"]["alpha"])] * 5  # the top of the grid: no weight


# disentanglement_lib's DCI tests (dci_test.py), on its importance matrices and its
# IdentityObservationsData: ten factors of ten values, observed as they are.
_DIAG = np.diag(5.0 * np.ones(5))
DLIB_IMPORTANCE = {  # name: (importance (codes, factors), disentanglement, completeness)
    "diagonal": (_DIAG, 1.0, 1.0),
    "diagonal_empty_codes": (np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), 1.0, 1.0),
    "zero": (np.zeros((10, 10)), 0.0, 0.0),
    "redundant_codes": (np.vstack([_DIAG, _DIAG]), 1.0, 1.0 - np.log(2) / np.log(10)),
    "missed_factors": (_DIAG[:2, :], 1.0, 1.0),
    "one_code_two_factors": (np.hstack([_DIAG, _DIAG]), 1.0 - np.log(2) / np.log(10), 1.0),
}


@pytest.mark.parametrize("name", DLIB_IMPORTANCE)
def test_dci_scores_of_dlib_importance_matrices(name):
    importance, d, c = DLIB_IMPORTANCE[name]
    assert obs.dci_disentanglement(importance) == pytest.approx(d, abs=1e-7)
    assert obs.dci_completeness(importance) == pytest.approx(c, abs=1e-7)


def _identity_observations(n, rng):
    return rng.integers(10, size=(n, 10))


@pytest.mark.parametrize("case", ["identity", "permuted", "duplicated"])
def test_dci_on_dlib_cases_at_the_smallest_size_offered(case):
    """dlib's metric tests at 1,000 / 1,000 points (the size of --sizes small): the identity
    code scores near 1; a code that permutes the factors afresh in every row (each code weakly
    tied to every factor) near 0, where a fixed lasso threshold once gave 0.70; duplicated codes
    split each factor's importance over two codes."""
    rng = np.random.default_rng(0)
    ftr, fte = _identity_observations(1000, rng), _identity_observations(1000, rng)
    code = {"identity": lambda f: f.astype(np.float64),
            "permuted": lambda f: np.stack([rng.permutation(row) for row in f]).astype(np.float64),
            "duplicated": lambda f: np.hstack([f, f]).astype(np.float64)}[case]
    r = obs.dci(code(ftr), ftr, code(fte), fte)
    if case == "permuted":
        assert 0.0 <= r["disentanglement"] <= 0.2 and 0.0 <= r["completeness"] <= 0.2
    else:
        assert 0.9 <= r["disentanglement"] <= 1.0
        target = 1.0 if case == "identity" else 1.0 - np.log(2) / np.log(10)
        assert r["completeness"] == pytest.approx(target, abs=0.1)


def test_dci_gbt_needs_scikit_learn_or_runs_it(samples):
    codes, factors, codes_test, factors_test = (a[:300] for a in samples["equal"])
    try:
        import sklearn  # noqa: F401
    except ImportError:
        with pytest.raises(UsageError, match="scikit-learn"):
            obs.dci(codes, factors, codes_test, factors_test, regressor="gbt")
        return
    r = obs.dci(codes, factors, codes_test, factors_test, regressor="gbt")
    assert r["disentanglement"] > 0.8 and r["protocol"]["regressor"] == "gbt"


def test_sap(samples):
    r = {name: obs.sap(*s) for name, s in samples.items()}
    gaps = {name: np.diff(np.sort(np.array(v["score_matrix"]), 0)[-2:], axis=0)[0] for name, v in r.items()}
    # One-input linear SVMs, one against the rest, cannot single out the middle values of an
    # ordinal factor, so even a perfect code is far from 1 (dlib's own SVM gives 0.42 on these
    # codes); what must hold is a clear gap for the aligned code and none without one.
    assert r["equal"]["sap"] > 0.3 and (gaps["equal"] > 0.15).all()
    assert r["rotated"]["sap"] < 0.15
    assert gaps["dup_drop"][0] < 0.02 and gaps["dup_drop"][4] < 0.05  # tied copies; no code
    assert np.allclose(gaps["dup_drop"][1:4], gaps["equal"][1:4], atol=0.05)
    assert r["noise"]["sap"] < 0.03


def test_modularity_and_explicitness(samples):
    r = {name: obs.modularity(s[0], s[1], codes_test=s[2], factors_test=s[3]) for name, s in samples.items()}
    assert r["equal"]["modularity"] > 0.98 and r["equal"]["explicitness_test"] > 0.99
    # A duplicated code is still about one factor; explicitness: four factors perfectly
    # ranked (AUC 1), the dropped one at chance (0.5): (4 + 0.5) / 5.
    assert r["dup_drop"]["modularity"] > 0.98
    assert r["dup_drop"]["explicitness_test"] == pytest.approx(0.9, abs=0.03)
    # Mixed codes share their information between factors; explicitness keeps it all.
    assert r["rotated"]["modularity"] < r["equal"]["modularity"] - 0.05
    assert r["rotated"]["explicitness_test"] > 0.98
    # Noise: AUC at chance. Modularity does not fall to 0 there: a code's spurious mutual
    # information is as likely to sit on one factor as on several (dlib's formula gives the
    # same), so only its distance below a modular code is checked.
    assert r["noise"]["explicitness_test"] == pytest.approx(0.5, abs=0.03)
    assert r["noise"]["modularity"] < r["equal"]["modularity"] - 0.2
    assert "explicitness_test" not in obs.modularity(*samples["equal"][:2])


def test_factor_vae_score():
    r = {name: iv.factor_vae_score(g, SIZES, seed=0, num_variance_estimate=2000, **SMALL) for name, g in CASES.items()}
    # Holding the factor of an aligned code fixed leaves that code only its noise (variance
    # 1e-4 against >= 0.67): it is always the least varying, so every vote is right.
    assert r["equal"]["eval_accuracy"] > 0.99 and r["equal"]["train_accuracy"] > 0.99
    # Factor 4 changes no code, so its batches vote at random and the majority goes to
    # other factors: it is the one fifth of the points missed.
    assert r["dup_drop"]["eval_accuracy"] == pytest.approx(0.8, abs=0.05)
    assert r["noise"]["eval_accuracy"] < 0.3  # chance: 1/5
    assert r["equal"]["num_active_dims"] == 5


def test_factor_vae_prunes_collapsed_codes():
    def represent(f, rng):  # factors plus a code that never moves
        return np.concatenate([f + 0.01 * rng.normal(size=f.shape), np.zeros((len(f), 1))], 1)
    r = iv.factor_vae_score(represent, SIZES, seed=0, num_variance_estimate=2000, **SMALL)
    assert r["num_active_dims"] == 5 and r["eval_accuracy"] > 0.99
    dead = iv.factor_vae_score(lambda f, rng: np.zeros((len(f), 3)), SIZES, seed=0, num_variance_estimate=100, **SMALL)
    assert dead["num_active_dims"] == 0 and dead["score"] == 0.0


def test_beta_vae_score():
    r = {name: iv.beta_vae_score(g, SIZES, seed=0, **SMALL) for name, g in CASES.items()}
    # The shared factor's code differs by noise only; the others by about their spread.
    assert r["equal"]["eval_accuracy"] > 0.99
    # Sharing factor 4 leaves every difference large, a pattern no other factor gives: a
    # linear classifier names it too, so this metric does not see the dropped factor.
    assert r["dup_drop"]["eval_accuracy"] > 0.95
    assert r["noise"]["eval_accuracy"] < 0.3  # chance: 1/5


def test_same_seed_same_result():
    g = CASES["equal"]
    a = iv.factor_vae_score(g, SIZES, seed=5, num_variance_estimate=500, num_train=50, num_eval=50)
    b = iv.factor_vae_score(g, SIZES, seed=5, num_variance_estimate=500, num_train=50, num_eval=50)
    assert a == b


# ------------------------------------------------------------------------- registry and inputs
def test_registry_runs_every_metric_to_json():
    assert set(dis.METRICS) == {"mig", "factor_vae", "dci", "sap", "beta_vae", "modularity"}
    sizes = {"mig": {"num_train": 1000}, "dci": {"num_train": 1000, "num_test": 500},
             "sap": {"num_train": 1000, "num_test": 500}, "modularity": {"num_train": 1000, "num_test": 500},
             "factor_vae": {"num_train": 50, "num_eval": 50, "num_variance_estimate": 500},
             "beta_vae": {"num_train": 50, "num_eval": 50}}
    for name, metric in dis.METRICS.items():
        result = json.loads(json.dumps(metric.run(CASES["equal"], SIZES, seed=1, **sizes[name])))
        assert result["metric"] == name and isinstance(result["score"], float) and metric.help
        assert result["protocol"]["seed"] == 1
        assert all(result["protocol"][k] == v for k, v in sizes[name].items())


def test_registry_sizes_are_the_functions_defaults_and_presets_apply():
    """The registry's dlib sizes are the ones the metric functions default to (one fact,
    checked here rather than written twice by accident); --sizes small, --train-size and
    --eval-size change only the sample sizes the metric has."""
    import inspect

    for name, metric in dis.METRICS.items():
        params = inspect.signature(metric.load()).parameters
        assert {k: params[k].default for k in metric.sizes} == dict(metric.sizes), name
        assert set(metric.small) == set(metric.sizes), name
    assert dis.sizes_for("mig", "small", eval_size=50) == {"num_train": 1000}
    assert dis.sizes_for("dci", "dlib", train_size=300, eval_size=40) == {"num_train": 300, "num_test": 40}
    assert dis.sizes_for("beta_vae", "small", eval_size=7) == {"batch_size": 64, "num_train": 200, "num_eval": 7}
    with pytest.raises(UsageError, match="--sizes 'huge': choose one of dlib, small"):
        dis.sizes_for("mig", "huge")
    with pytest.raises(UsageError, match="--train-size 1: must be at least 2"):
        dis.sizes_for("mig", train_size=1)


def test_parse_metrics():
    assert dis.parse_metrics("mig, dci,mig") == ("mig", "dci")
    assert dis.parse_metrics("all") == tuple(dis.METRICS)
    with pytest.raises(UsageError, match="unknown metric 'migg': choose from mig, factor_vae, dci, sap, beta_vae, modularity"):
        dis.parse_metrics("mig,migg")
    with pytest.raises(UsageError, match="choose from"):
        dis.parse_metrics(" , ")


def test_bad_inputs_are_usage_errors(samples):
    codes, factors, codes_test, factors_test = samples["equal"]
    with pytest.raises(UsageError, match="N = 4000"):
        obs.mig(codes, factors[:10])
    with pytest.raises(UsageError, match="NaN"):
        obs.mig(np.full_like(codes, np.nan), factors)
    with pytest.raises(UsageError, match="same number"):
        obs.sap(codes, factors, codes_test[:, :3], factors_test)
    with pytest.raises(UsageError, match="regressor 'tree'"):
        obs.dci(codes, factors, codes_test, factors_test, regressor="tree")
    with pytest.raises(UsageError, match="represent must return"):
        iv.beta_vae_score(lambda f, rng: f[:-1], SIZES, num_train=5, num_eval=5)


def test_matches_scikit_learn_where_installed(samples):
    """The estimators dlib calls, where scikit-learn is installed (vaecli does not need it)."""
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import mutual_info_score, roc_auc_score
    from sklearn.svm import LinearSVC

    codes, factors, codes_test, factors_test = (a[:1000] for a in samples["rotated"])
    binned = np.asarray(obs.discretize(codes.astype(np.float32), 20))
    want = [[mutual_info_score(factors[:, j], binned[:, i]) for j in range(5)] for i in range(5)]
    np.testing.assert_allclose(obs.mutual_info(binned, factors), want, atol=1e-5)
    svc = [[np.mean(LinearSVC(C=0.01, class_weight="balanced").fit(codes[:, i:i + 1], factors[:, j])
                    .predict(codes_test[:, i:i + 1]) == factors_test[:, j]) for j in range(5)] for i in range(5)]
    np.testing.assert_allclose(obs.sap(codes, factors, codes_test, factors_test)["score_matrix"], svc, atol=2e-3)
    mu, sd = codes.mean(0), codes.std(0)
    aucs = []
    for j in range(5):
        clf = LogisticRegression().fit((codes - mu) / sd, factors[:, j])
        proba = clf.predict_proba((codes_test - mu) / sd)
        aucs.append(np.mean([roc_auc_score(factors_test[:, j] == k, proba[:, i]) for i, k in enumerate(clf.classes_)]))
    got = obs.modularity(codes, factors, codes_test=codes_test, factors_test=factors_test)["explicitness_test"]
    assert got == pytest.approx(np.mean(aucs), abs=2e-3)
