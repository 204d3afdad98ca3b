"""Small linear classifiers and regressors in JAX, for the disentanglement metrics (the probes).

Each stands in for the scikit-learn estimator that google-research/disentanglement_lib
calls, solving the same objective (so the optimum, not the solver, is what is shared):
  logistic   LogisticRegression() (multinomial, L2 with C=1 on the weights, intercept free),
             by 100 L-BFGS steps as sklearn's lbfgs default `max_iter=100`;
  svc_1d     LinearSVC(C=0.01, class_weight="balanced") on one input: one-vs-rest squared
             hinge, the intercept a weight on a constant 1 and penalised (liblinear's
             intercept_scaling=1), solved by generalized Newton steps;
  lasso      the Lasso objective 1/(2N)|y - Xw|^2 + alpha |w|_1, by FISTA on the Gram matrix;
  roc_auc    roc_auc_score of one class against the rest, ties counted as half.
Classes are indices 0..K-1 padded to a common K; `present` marks those seen in training
(sklearn fits only the classes it sees).
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

_ABSENT = -1e9  # logit of a class not seen in training: its probability is exactly 0
_STEP_LENGTHS = (0.0, 0.125, 0.25, 0.5, 1.0)  # tried along each Newton direction; 0 keeps the point


def present_classes(y: jax.Array, num_classes: int) -> jax.Array:
    """(num_classes,) bool: which classes occur in y (labels 0..num_classes-1)."""
    return jnp.zeros(num_classes, bool).at[y].set(True)


def logistic_logits(params, x: jax.Array, present: jax.Array) -> jax.Array:
    w, b = params
    return x @ w + b + jnp.where(present, 0.0, _ABSENT)


@partial(jax.jit, static_argnames=("num_classes", "steps"))
def fit_logistic(x: jax.Array, y: jax.Array, num_classes: int, c: float = 1.0, steps: int = 100):
    """Multinomial logistic regression of labels y (N,) on x (N, D): sklearn's objective
    C * sum(cross-entropy) + |W|^2 / 2, divided here by C*N so the scale is per point.
    Returns (params, present)."""
    n, d = x.shape
    present = present_classes(y, num_classes)

    def loss(params):
        logp = jax.nn.log_softmax(logistic_logits(params, x, present))
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], 1)) + 0.5 * jnp.sum(params[0] ** 2) / (c * n)

    init = (jnp.zeros((d, num_classes), x.dtype), jnp.zeros(num_classes, x.dtype))
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    def step(carry, _):
        params, state = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=loss)
        return (optax.apply_updates(params, updates), state), None

    # A fixed number of steps in one compiled loop: no host round-trip per step.
    (params, _), _ = jax.lax.scan(step, (init, opt.init(init)), None, length=steps)
    return params, present


def roc_auc(scores: jax.Array, positive: jax.Array) -> jax.Array:
    """Area under the ROC curve of scores (N,) for the boolean labels (N,): the Mann-Whitney
    statistic with average ranks for ties. NaN when one of the two groups is empty."""
    s = jnp.sort(scores)
    rank = (jnp.searchsorted(s, scores, side="left") + jnp.searchsorted(s, scores, side="right") + 1) / 2.0
    n_pos = jnp.sum(positive)
    n_neg = positive.shape[0] - n_pos
    u = jnp.sum(jnp.where(positive, rank, 0.0)) - n_pos * (n_pos + 1) / 2.0
    return jnp.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), jnp.nan)


def _svc_weights(y: jax.Array, num_classes: int, c: float):
    """Per-problem, per-point C_i of liblinear's one-vs-rest with balanced class weights: a
    positive of class k gets C * w_k, a negative plain C; with two classes liblinear fits one
    problem with each class weighted, which the two mirrored problems here reproduce."""
    n = y.shape[-1]
    counts = jnp.sum(jax.nn.one_hot(y, num_classes), axis=-2)  # (..., K)
    k_present = jnp.sum(counts > 0, axis=-1, keepdims=True)
    cw = jnp.where(counts > 0, n / (k_present * jnp.maximum(counts, 1)), 0.0)  # (..., K)
    own = jnp.take_along_axis(cw, y, axis=-1)  # (..., N): the weight of each point's class
    pos = y[..., None, :] == jnp.arange(num_classes)[:, None]  # (..., K, N)
    neg_w = jnp.where(k_present[..., None] == 2, own[..., None, :], 1.0)
    return pos, c * jnp.where(pos, cw[..., :, None], neg_w), counts > 0


@partial(jax.jit, static_argnames=("num_classes", "max_steps"))
def svc_1d_accuracy(x_train, y_train, x_test, y_test, num_classes: int, c: float = 0.01, max_steps: int = 50):
    """Test accuracy of a 1-input linear SVM for every (input, label) pair: x (D, N) float,
    y (F, N) int; returns (D, F). Each class-vs-rest problem has two weights (slope and
    penalised intercept), so a Newton step is a 2x2 solve; each step keeps the best of a few
    step lengths along the Newton direction, so the objective never rises. Steps stop when no
    weight moves any more (typically under ten) or after max_steps."""
    pos, cost, present = _svc_weights(y_train, num_classes, c)  # (F, K, N), (F, K, N), (F, K)
    s = jnp.where(pos, 1.0, -1.0)[None]  # (1, F, K, N)
    x = x_train[:, None, None, :]  # (D, 1, 1, N)
    cost = cost[None]
    ts = jnp.array(_STEP_LENGTHS, x_train.dtype)

    def objective(w, b):  # w, b: (D, F, K)
        slack = jnp.maximum(0.0, 1.0 - s * (w[..., None] * x + b[..., None]))
        return 0.5 * (w**2 + b**2) + jnp.sum(cost * slack**2, axis=-1)

    def newton(carry):
        w, b, i, _ = carry
        h = cost * (s * (w[..., None] * x + b[..., None]) < 1.0)  # active points' C_i
        sxx, sx, s1 = (jnp.sum(h * x**2, -1), jnp.sum(h * x, -1), jnp.sum(h, -1))
        tx, t1 = jnp.sum(h * s * x, -1), jnp.sum(h * s, -1)
        # The minimiser of the quadratic on the current active set: H theta = 2 sum C_i s_i x_i.
        a11, a12, a22 = 1.0 + 2.0 * sxx, 2.0 * sx, 1.0 + 2.0 * s1
        det = a11 * a22 - a12**2
        dw = (a22 * 2.0 * tx - a12 * 2.0 * t1) / det - w
        db = (a11 * 2.0 * t1 - a12 * 2.0 * tx) / det - b
        values = jnp.stack([objective(w + t * dw, b + t * db) for t in _STEP_LENGTHS])
        t = ts[jnp.argmin(values, axis=0)]
        moved = jnp.max(jnp.abs(t * dw) + jnp.abs(t * db))
        return w + t * dw, b + t * db, i + 1, moved

    def going(carry):
        return (carry[2] < max_steps) & (carry[3] > 1e-5)

    zeros = jnp.zeros((x_train.shape[0],) + pos.shape[:2], x_train.dtype)
    w, b, _, _ = jax.lax.while_loop(going, newton, (zeros, zeros, 0, jnp.asarray(jnp.inf, x_train.dtype)))
    decision = w[..., None] * x_test[:, None, None, :] + b[..., None]  # (D, F, K, M)
    decision = jnp.where(present[None, :, :, None], decision, -jnp.inf)
    return jnp.mean(jnp.argmax(decision, axis=2) == y_test[None], axis=-1)


@partial(jax.jit, static_argnames=("steps",))
def lasso(x: jax.Array, y: jax.Array, alpha: float, steps: int = 1000) -> jax.Array:
    """Lasso weights (D, F) of each column of y (N, F) on x (N, D), both centred. FISTA from
    zero keeps identical columns of x identical in w, so a duplicated code shares its
    weight evenly instead of one copy taking all of it."""
    n = x.shape[0]
    gram = x.T @ x / n
    xy = x.T @ y / n
    lip = jnp.maximum(jnp.linalg.eigvalsh(gram)[-1], 1e-12)

    def step(carry, _):
        w, z, t = carry
        u = z - (gram @ z - xy) / lip
        w_new = jnp.sign(u) * jnp.maximum(jnp.abs(u) - alpha / lip, 0.0)
        t_new = (1.0 + jnp.sqrt(1.0 + 4.0 * t * t)) / 2.0
        return (w_new, w_new + (t - 1.0) / t_new * (w_new - w), t_new), None

    w0 = jnp.zeros_like(xy)
    (w, _, _), _ = jax.lax.scan(step, (w0, w0, jnp.asarray(1.0, x.dtype)), None, length=steps)
    return w


ALPHA_GRID = 16  # alphas tried by lasso_cv, geometric from the largest useful one down 1000-fold
CV_FOLDS = 5


@partial(jax.jit, static_argnames=("steps",))
def _fold_errors(x_fit, y_fit, x_val, y_val, alphas, steps: int = 1000):
    """Held-out squared errors (N_val, A, F) of the lasso fitted at each alpha, centred on the fit part."""
    mx, my = x_fit.mean(0), y_fit.mean(0)
    w = jax.vmap(lambda a: lasso(x_fit - mx, y_fit - my, a, steps))(alphas)  # (A, D, F)
    pred = jnp.einsum("nd,adf->naf", x_val - mx, w) + my
    return (pred - y_val[:, None, :]) ** 2


def lasso_cv(x: jax.Array, y: jax.Array, folds: int = CV_FOLDS, grid: int = ALPHA_GRID):
    """Lasso weights (D, F) with each column's alpha chosen by `folds`-fold cross-validation,
    and those alphas (F,). x, y centred. The grid is geometric from the alpha that zeroes
    every weight (so the zero model is on it) down 1000-fold; each column takes the largest
    alpha whose held-out squared error is within one standard error of the least (the
    one-standard-error rule of Hastie, Tibshirani & Friedman): the least error alone keeps
    chance weights on codes that predict nothing, which then look disentangled. Weak
    dependence spread over many codes predicts well beyond that margin and is kept. The
    folds are every `folds`-th row: no random state. The folds are cut on the host and the
    choice is one compiled program, so a call runs a dozen programs, not one per array
    operation."""
    x, y = np.asarray(x), np.asarray(y)
    alphas = _alpha_grid(x, y, grid)
    sq = jnp.concatenate([_fold_errors(x[fit], y[fit], x[val], y[val], alphas)
                          for val, fit in _folds(len(x), folds)])  # (N, A, F)
    chosen = _one_standard_error_choice(sq, alphas)
    return lasso(x, y, chosen), chosen


def _alpha_grid(x, y, grid: int):
    # A hair above the largest correlation, so that rounding cannot leave a weight at the top.
    # Not compiled as one program: fused, the grid moves by an ulp, and with it the choice.
    x, y = jnp.asarray(x), jnp.asarray(y)
    top = 1.0001 * jnp.max(jnp.abs(x.T @ y / x.shape[0]))
    return top * jnp.logspace(0.0, -3.0, grid, dtype=x.dtype)  # decreasing


@jax.jit
def _one_standard_error_choice(sq, alphas):
    """Per column, the first (largest) alpha whose mean held-out error is within one standard
    error of the least."""
    mean, se = sq.mean(0), sq.std(0) / jnp.sqrt(sq.shape[0])
    best = jnp.argmin(mean, axis=0)  # (F,)
    cols = jnp.arange(mean.shape[1])
    within = mean <= (mean[best, cols] + se[best, cols])[None, :]
    return alphas[jnp.argmax(within, axis=0)]


def _folds(n: int, folds: int):
    for k in range(folds):
        val = np.arange(k, n, folds)
        yield val, np.setdiff1d(np.arange(n), val)
