"""Every config key, declared once: its type, its default, a check where a value can be
impossible, and its role.

A key's role says what changing it means, and is the one source of the lists other parts
read (nothing else writes such a list by hand):

    role       compiled  --resume  replicas   what it is
    fixed      yes       no        no         what a step computes
    replica    no        no        may differ a value the training state carries
    data       no        no        no         which images (the program sees their shape and number)
    execution  yes       may change no        how the step runs: devices, what it does with a non-finite update
    run        no        may change no        how long to train, what to validate, save and log, where files live

"compiled": the compiled training epoch reads it, so a program kept for one config serves
another only if the two agree on it (vaecli.compiled.cache). "--resume": `vae train
--resume RUN --set` may change it. "replicas": `--seeds`, `--sweep` and `vae tune` may give
the replicas of one program different values. Two refinements live in code, next to what
they refine: a staged learning-rate schedule bakes `optim.lr` into the program (then compiled,
not per replica); a single run's program skips the weight-decay stage at `optim.weight_decay` 0.
"""
from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass, field
from typing import Literal, Optional

from vaecli import registry
from vaecli.clock import is_duration


@dataclass(frozen=True)
class Role:
    name: str
    compiled: bool
    resumable: bool
    replica: bool
    meaning: str


ROLES: dict[str, Role] = {r.name: r for r in (
    Role("fixed", True, False, False, "what a step computes"),
    Role("replica", False, False, True, "a value the training state carries: replicas of one program may differ in it"),
    Role("data", False, False, False, "which images: the compiled program sees only their shape and number"),
    Role("execution", True, True, False, "how the step runs (devices, non-finite updates), not what a finite step "
                                         "computes"),
    Role("run", False, True, False, "how long to train, what to validate, save and log, where files live"),
)}


def _key(default, role: str = "fixed", check=None, one_of: dict | None = None):
    """A config field: `check` is (predicate, message); `one_of` a registry whose keys are the
    valid names (read when validating, so a registry entry is all a new choice needs)."""
    meta = {"role": role}
    if check is not None:
        meta["check"] = check
    if one_of is not None:
        meta["one_of"] = one_of
    return field(default=default, metadata=meta)


def _check(pred, message):
    return (pred, message)


_POSITIVE = _check(lambda v: v > 0, "must be > 0")
_NON_NEGATIVE = _check(lambda v: v >= 0, "must be >= 0")
_WIDTHS = _check(lambda v: all(w > 0 for w in v), "widths must be > 0")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = _key("binarized_mnist", "data")  # a TFDS name
    data_dir: Optional[str] = _key(None, "run")  # TFDS data_dir (None: $TFDS_DATA_DIR, else ~/tensorflow_datasets)
    manual_dir: Optional[str] = _key(None, "run")  # folder with the files TFDS would download (offline use)
    cache_dir: Optional[str] = _key(None, "run")  # vaecli's compact array cache (None: $XDG_CACHE_HOME/vaecli/data, else ~/.cache/vaecli/data)
    binarize: Literal["none", "static", "dynamic"] = _key("static")
    val_size: int = _key(10000, "data", _POSITIVE)  # held out of train when no validation split
    # one's own images (vaecli.data.own_source): a folder or an .npz/.npy at `path`, cached once
    source: Literal["tfds", "folder", "arrays"] = _key("tfds", "data")
    path: Optional[str] = _key(None, "data")
    image_size: Optional[tuple[int, ...]] = _key(None, "data", _check(lambda v: len(v) == 2 and min(v) > 0,
                                                                      "must be [height, width], both > 0"))
    # folder/arrays without test (validation) splits: test_size (val_size) drawn with split_seed
    test_size: int = _key(10000, "data", _NON_NEGATIVE)
    split_seed: int = _key(0, "data", _NON_NEGATIVE)


@dataclass(frozen=True)
class FlowConfig:
    # q(z|x): the encoder's Gaussian pushed through `steps` invertible maps (vaecli.models.flows);
    # null: the Gaussian alone. Planar steps are global; IAF steps see the Gaussian's statistics.
    kind: Optional[Literal["planar", "iaf"]] = _key(None)
    steps: int = _key(4, check=_POSITIVE)
    hidden: tuple[int, ...] = _key((32,), check=_WIDTHS)  # iaf: the MADE widths of each step


@dataclass(frozen=True)
class ModelConfig:
    kind: str = _key("mlp", one_of=registry.MODEL_KINDS)
    latent_dim: int = _key(20, check=_POSITIVE)
    hidden: tuple[int, ...] = _key((500,), check=_WIDTHS)  # dense widths (conv: after the convs)
    channels: tuple[int, ...] = _key((32, 64), check=_WIDTHS)  # conv: stride-2 conv layers
    activation: Literal["relu", "tanh", "elu", "gelu", "softplus", "swish", "gated"] = _key("relu")
    likelihood: str = _key("bernoulli", one_of=registry.LIKELIHOODS)
    obs_variance: Literal["learned", "fixed"] = _key("learned")  # gaussian: one learned log-σ per pixel, or fixed
    obs_std: float = _key(0.1, check=_POSITIVE)  # gaussian with obs_variance=fixed
    output_bias: Literal["zero", "data_mean"] = _key("zero")  # data_mean: logit of the training pixel mean
    prior: str = _key("normal", one_of=registry.PRIORS)
    pseudo_inputs: int = _key(500, check=_POSITIVE)  # VampPrior components
    latent_dim2: Optional[int] = _key(None, check=_POSITIVE)  # a second stochastic layer
    hidden2: tuple[int, ...] = _key((100, 100), check=_WIDTHS)  # chain: the MLPs between the two layers
    # Two layers' structure: chain (Burda et al.: q(z1|x) q(z2|z1), p(x|z1)) or hvae (Tomczak &
    # Welling: q(z2|x) q(z1|x, z2), p(x|z1, z2), any prior on z2; every network of `hidden` widths)
    hierarchy: Literal["chain", "hvae"] = _key("chain")
    flow: FlowConfig = FlowConfig()  # a flow posterior (default: none)
    conditional: bool = _key(False)  # q(z|x, y), p(x|z, y): the class label y given to both networks
    num_classes: Optional[int] = _key(None, check=_POSITIVE)  # conditional; null: from the data's labels
    # gaussian (the models above) or vq (VQ-VAE, vaecli.models.vq: codes of code_dim numbers, each
    # quantised to the nearest of codebook_size vectors; docs/config.md says how they tile)
    latent: Literal["gaussian", "vq"] = _key("gaussian")
    codebook_size: int = _key(512, check=_check(lambda v: v >= 2, "must be >= 2: one vector carries no information"))
    code_dim: int = _key(64, check=_POSITIVE)
    codebook_update: Literal["ema", "loss"] = _key("ema")  # moving averages (the paper's appendix) or its loss
    codebook_decay: float = _key(0.99, check=_check(lambda v: 0 < v < 1, "must be in (0, 1), e.g. 0.99"))
    dead_code_threshold: float = _key(0.0, check=_NON_NEGATIVE)  # ema: restart codes used less (0: off)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = _key(30, "run", _POSITIVE)
    batch_size: int = _key(128, check=_POSITIVE)
    # Drop up to this many updates whose loss or update is NaN/Inf (counted over the whole
    # run, inside the compiled step) before failing; 0 fails at the first one.
    skip_nonfinite: int = _key(0, "execution", _NON_NEGATIVE)
    # Devices of the data-parallel mesh (batch_size is the global batch); 0: all of them.
    devices: int = _key(0, "execution", _NON_NEGATIVE)
    # An exponential moving average of the parameters, updated at every step (0: off); when
    # on, validation, pictures, eval-elbo and sample use it (--raw-params: the raw ones).
    ema_decay: float = _key(0.0, check=_check(lambda v: 0 <= v < 1, "must be in [0, 1): 0 turns it off, e.g. 0.999"))
    # GPU matmuls: float32 (exact), tf32 (JAX's NVIDIA default), bfloat16 (bf16 inputs, f32 sums);
    # XLA's CPU backend computes all three in float32.
    precision: Literal["float32", "tf32", "bfloat16"] = _key("float32")
    # Wall time ("9m30s", "2h", "90s"): stop at the last epoch boundary that fits, with a
    # checkpoint, status `paused`, exit 3 (vaecli.training.stops); null: no limit.
    time_limit: Optional[str] = _key(None, "run", _check(is_duration,
                                                         "is not a duration; write e.g. 9m30s, 2h, 1h30m or 90s"))
    # Early stopping: after this many validations without the ELBO rising by min_delta (0: off)
    patience: int = _key(0, "run", _NON_NEGATIVE)
    min_delta: float = _key(0.0, "run", _NON_NEGATIVE)


@dataclass(frozen=True)
class OptimConfig:
    name: Literal["adam", "adamw", "sgd", "rmsprop"] = _key("adam")
    lr: float = _key(1e-3, "replica", _POSITIVE)
    # L2 penalty (weight_decay/2)·|θ|² added to the per-example loss: a Gaussian prior on
    # the weights, i.e. MAP estimation. 0 is maximum likelihood (MLE).
    weight_decay: float = _key(0.0, "replica", _NON_NEGATIVE)
    grad_clip: Optional[float] = _key(None, check=_POSITIVE)  # global-norm clipping
    normalize_grads: bool = _key(False)  # each gradient tensor / its L2 norm first (the VampPrior code's AdamNormGrad)
    eps: float = _key(1e-8, check=_POSITIVE)  # adam/adamw/rmsprop ε (the IWAE paper: 1e-4)
    # iwae: stage i = 0, 1, ... lasts 3^i epochs at lr·10^(−i/7) (Burda et al. 2016); the last
    # stage reached goes on for as long as train.epochs asks.
    schedule: Literal["constant", "iwae"] = _key("constant")


@dataclass(frozen=True)
class DiscriminatorConfig:
    """FactorVAE's discriminator (vaecli.models.factorvae), as disentanglement_lib's."""
    hidden: tuple[int, ...] = _key((1000,) * 6, check=_WIDTHS)
    lr: float = _key(1e-4, check=_POSITIVE)  # its own Adam (β1 0.5, β2 0.9)


@dataclass(frozen=True)
class ObjectiveConfig:
    name: str = _key("elbo", one_of=registry.OBJECTIVES)
    kl: Literal["analytic", "mc"] = _key("analytic")
    samples: int = _key(1, check=_POSITIVE)  # z samples per example (iwae: K)
    beta: float = _key(1.0, "replica", _NON_NEGATIVE)  # weight of the KL term (β-VAE)
    warmup_epochs: float = _key(0.0, "replica", _NON_NEGATIVE)  # KL weight 0 -> β linearly
    free_bits: float = _key(0.0, "replica", _NON_NEGATIVE)  # nats: per-dimension KL floor
    # The gradient estimator (vaecli.models.gradients): reparam, stl (Roeder et al. 2017: unbiased
    # for the ELBO, biased for K > 1) or dreg (Tucker et al. 2019: unbiased, for the K-sample bounds).
    gradient: Literal["reparam", "stl", "dreg"] = _key("reparam")
    groups: int = _key(1, check=_POSITIVE)  # miwae, piwae: M groups of `samples` (K) draws each
    alpha: float = _key(0.5, "replica", _NON_NEGATIVE)  # vr: the Rényi α (1: the ELBO, 0: the IWAE bound)
    # elbo: the capacity-annealed β-VAE (Burgess et al. 2018), recon + β·|KL − C| with the
    # target C rising linearly from 0 to `capacity` nats over `capacity_epochs` (0: off)
    capacity: float = _key(0.0, check=_NON_NEGATIVE)
    capacity_epochs: float = _key(0.0, check=_NON_NEGATIVE)
    discriminator: DiscriminatorConfig = DiscriminatorConfig()  # factorvae only
    commitment: float = _key(0.25, check=_NON_NEGATIVE)  # vq: β of the commitment loss |z_e − sg[e]|²


@dataclass(frozen=True)
class EvalConfig:
    every_epochs: int = _key(5, "run", _POSITIVE)
    batch_size: int = _key(1000, "run", _POSITIVE)
    grid: int = _key(64, "run", _POSITIVE)  # images in the PNG grids written at each eval


@dataclass(frozen=True)
class CheckpointConfig:
    every_epochs: int = _key(5, "run", _POSITIVE)
    keep: int = _key(3, "run", _POSITIVE)  # the latest `keep` checkpoints are kept
    keep_best: bool = _key(True, "run")  # also keep the checkpoint with the best validation ELBO (--step best)


@dataclass(frozen=True)
class PriorConfig:
    """The VQ-VAE's code prior, `vae train-prior RUN` (vaecli.models.pixelcnn): gated causal
    convolutions over the codes in raster order; RUN/prior/config.yaml keeps what it trained with."""
    layers: int = _key(6, "run", _POSITIVE)  # kernel-2 layers, dilations 1, 2, 4, ...: they see 2^layers codes back
    channels: int = _key(64, "run", _POSITIVE)
    epochs: int = _key(10, "run", _POSITIVE)
    batch_size: int = _key(128, "run", _POSITIVE)
    lr: float = _key(1e-3, "run", _POSITIVE)


@dataclass(frozen=True)
class WandbConfig:
    project: Optional[str] = _key(None, "run")  # null: W&B off (needs `pip install "vaecli[wandb]"`)
    entity: Optional[str] = _key(None, "run")
    mode: Literal["online", "offline"] = _key("online", "run")
    tags: tuple[str, ...] = _key((), "run")


@dataclass(frozen=True)
class MlflowConfig:
    tracking_uri: Optional[str] = _key(None, "run")  # null: MLflow off (needs `pip install "vaecli[mlflow]"`)
    experiment: str = _key("vaecli", "run")


@dataclass(frozen=True)
class LogConfig:
    tensorboard: bool = _key(True, "run")
    progress: Literal["auto", "bar", "lines", "none"] = _key("auto", "run")
    wandb: WandbConfig = WandbConfig()  # experiment trackers (vaecli.rundir.trackers), off by default
    mlflow: MlflowConfig = MlflowConfig()


@dataclass(frozen=True)
class Config:
    seed: int = _key(0, "replica", _NON_NEGATIVE)
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    optim: OptimConfig = OptimConfig()
    objective: ObjectiveConfig = ObjectiveConfig()
    eval: EvalConfig = EvalConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    log: LogConfig = LogConfig()
    code_prior: PriorConfig = PriorConfig()  # model.latent=vq: `vae train-prior`


@dataclass(frozen=True)
class Key:
    """One dotted config key: its type (a registry's names as a Literal), default and role."""
    name: str
    type: object
    default: object
    role: Role


@functools.cache
def keys(cls=Config, prefix: str = "") -> tuple[Key, ...]:
    """Every dotted key of the config, in declaration order (read once: the schema is fixed)."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name] if "one_of" not in f.metadata else Literal[tuple(f.metadata["one_of"])]
        if dataclasses.is_dataclass(tp):
            out += keys(tp, f"{prefix}{f.name}.")
            continue
        out.append(Key(f"{prefix}{f.name}", tp, f.default, ROLES[f.metadata["role"]]))
    return tuple(out)


def names_where(**flags) -> tuple[str, ...]:
    """The dotted keys whose role has these flags: names_where(resumable=True)."""
    return tuple(k.name for k in keys() if all(getattr(k.role, f) == v for f, v in flags.items()))


REPLICA_KEYS = names_where(replica=True)  # may differ between the replicas of one program
RESUMABLE = names_where(resumable=True)  # `--resume --set` may change them
UNCOMPILED = names_where(compiled=False)  # the compiled training epoch does not read them


def summarize(names) -> str:
    """'train.epochs, eval.*, ...': the keys, a section whose every key is listed as `section.*`."""
    names, out = list(names), []
    for name in names:
        section = name.rpartition(".")[0].split(".")[0]
        whole = section and all(k.name in names for k in keys() if k.name.startswith(section + "."))
        item = f"{section}.*" if whole else name
        if item not in out:
            out.append(item)
    return ", ".join(out)
