"""`vae show`: a dry run. What one training step costs and whether it fits, before training.

The training epoch is built exactly as the trainer builds it (`compiled.state.init_state` +
`compiled.epoch.make_epoch_fn`, on the mesh of `train.devices`) and compiled from abstract shapes
(`jax.ShapeDtypeStruct`): no image is read, nothing is trained, nothing is written. The
figures are XLA's own: `compiled.cost_analysis()` (FLOPs, bytes accessed) and
`compiled.memory_analysis()` (the buffers the program needs on each device).

Two programs are compiled:
- the epoch the trainer runs (the whole training split as its argument): its memory
  analysis is the device memory a run needs;
- the same epoch built for a split of one batch, i.e. exactly one step: its cost analysis
  is the cost of one step. The full epoch's own cost analysis cannot be divided by the
  number of steps, because XLA's HLO cost analysis counts the body of a while loop (the
  `lax.scan` over steps) once, whatever its trip count.

The image shape and the number of training images come from the run's meta.json, or for
a config from the data cache's index (`vae data prepare`), else from `data.KNOWN`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vaecli import config as config_lib, data
from vaecli.config import Config
from vaecli.rundir import layout


def resolve(target: str | Path, overrides: list[str]) -> tuple[Config, dict, str]:
    """(config, training-split description, what `target` is) for a config file or a run folder."""
    p = Path(target)
    if not p.exists():
        from vaecli.errors import UsageError

        raise UsageError(f"{p}: no such config file or run folder (vae show takes a YAML config or a run folder)")
    if p.is_dir():
        run = layout.open_run(p)
        cfg = config_lib.from_dict(config_lib.apply_overrides(config_lib.to_dict(run.config), overrides))
        d = run.meta["data"]
        train = {"image_shape": tuple(d["image_shape"]), "num_train": int(d["num_train"]),
                 "scale": int(d.get("train_scale", 1)), "source": f"run {p}/meta.json"}
        return cfg, train, f"run {p}"
    cfg = config_lib.load(p, overrides)
    return cfg, data.describe_train(cfg.data), f"config {p}"


def count_params(params: dict) -> tuple[int, dict, dict]:
    """(total, per top-level module, per layer) numbers of parameters of a nested dict."""
    import jax

    modules, layers = {}, {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        keys = [str(getattr(k, "key", k)) for k in path]
        n = int(np.prod(leaf.shape))
        modules[keys[0]] = modules.get(keys[0], 0) + n
        layer = ".".join(keys[:-1]) or keys[0]
        layers[layer] = layers.get(layer, 0) + n
    return sum(modules.values()), modules, layers


def _compile_epoch(fn, tx, cfg: Config, state, n_train: int, dim: int, scale: int, mesh):
    import jax
    from jax.sharding import NamedSharding, PartitionSpec as P

    from vaecli.compiled import devices, epoch

    # Replicated on the mesh, as devices.replicate puts the real arrays (one device: no sharding).
    sharding = NamedSharding(mesh, P()) if mesh.size > 1 else None
    spec = lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)
    abstract_state = jax.tree.map(lambda a: spec(a.shape, a.dtype), state)
    images = spec((n_train, dim), np.uint8)
    epoch_fn = epoch.make_epoch_fn(fn, tx, cfg, n_train, scale, batch_sharding=devices.batch_sharding(mesh))
    return epoch_fn.lower(abstract_state, images).compile()


def _cost(compiled) -> dict:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older JAX: one dict per program
        cost = cost[0]
    return cost or {}


def show(target: str | Path, overrides: list[str] = ()) -> dict:
    """The resolved config, parameter counts, and XLA's cost and memory analysis of the
    compiled training epoch, as one JSON-able dict."""
    return analyse(*resolve(target, list(overrides)))


def analyse(cfg: Config, train: dict, what: str) -> dict:
    """`show` for a resolved (config, training-split description, label)."""
    import jax

    from vaecli.compiled import devices, state as state_lib

    shape, n_train, scale = train["image_shape"], train["num_train"], train["scale"]
    batch = cfg.train.batch_size
    if n_train < batch:
        from vaecli.errors import RunError

        raise RunError(f"train.batch_size={batch} is larger than the training split ({n_train} images); lower it")
    mesh = devices.make_mesh(cfg.train.devices)
    devices.check_batch(batch, mesh)
    # shapes and dtypes are all it needs: traced, not computed (no data-dependent init either)
    fn, tx, state = state_lib.template_state(cfg, shape)
    total, modules, layers = count_params(fn.params)
    dim = int(np.prod(shape))

    step = _cost(_compile_epoch(fn, tx, cfg, state, batch, dim, scale, mesh))
    mem = _compile_epoch(fn, tx, cfg, state, n_train, dim, scale, mesh).memory_analysis()
    memory = {k: int(getattr(mem, f"{k}_size_in_bytes", 0) or 0)
              for k in ("argument", "output", "alias", "temp", "generated_code")}
    # Donated arguments alias the outputs: those bytes are counted once.
    needed = memory["argument"] + memory["output"] - memory["alias"] + memory["temp"] + memory["generated_code"]

    devs = list(mesh.devices.flat)
    limit = _memory_limit(devs[0])
    steps_per_epoch = n_train // batch
    flops = float(step.get("flops", 0.0))
    return {
        "target": what,
        "config": config_lib.to_dict(cfg),
        "data": {"image_shape": list(shape), "num_train": n_train, "source": train["source"]},
        "params": total,
        "params_by_module": modules,
        "params_by_layer": layers,
        "steps_per_epoch": steps_per_epoch,
        "flops_per_step": flops,
        "bytes_per_step": float(step.get("bytes accessed", 0.0)),
        "transcendentals_per_step": float(step.get("transcendentals", 0.0)),
        "flops_per_epoch": flops * steps_per_epoch,
        "memory_bytes": needed,
        "memory": memory,
        "devices": {"count": len(devs), "platform": devs[0].platform, "kind": devs[0].device_kind,
                    "memory_limit_bytes": limit},
        "fits": None if limit is None else needed <= limit,
        "jax_version": jax.__version__,
    }


def _memory_limit(device) -> int | None:
    """The device's memory in bytes where the backend reports it (GPUs, TPUs; not CPUs)."""
    try:
        stats = device.memory_stats()
    except Exception:  # backends without memory statistics raise or return None
        return None
    return int(stats["bytes_limit"]) if stats and "bytes_limit" in stats else None


def _si(x: float, unit: str) -> str:
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def format_report(res: dict) -> str:
    """The human-readable `vae show`: config YAML, parameters, cost, memory."""
    lines = [f"# {res['target']}", config_lib.dump_yaml(config_lib.from_dict(res["config"])).rstrip(),
             "", f"data: images {'x'.join(map(str, res['data']['image_shape']))}, {res['data']['num_train']} "
                 f"training images ({res['data']['source']})", "",
             f"parameters: {res['params']:,}"]
    width = max(len(k) for k in res["params_by_layer"])
    for module, n in res["params_by_module"].items():
        lines.append(f"  {module:<{width + 2}}  {n:>12,}")
        for layer, m in res["params_by_layer"].items():
            if layer.split(".")[0] == module and layer != module:
                lines.append(f"    {layer:<{width}}  {m:>12,}")
    d = res["devices"]
    mem = res["memory"]
    lines += ["", f"per step (batch {res['config']['train']['batch_size']}, XLA cost analysis on "
                  f"{d['count']} x {d['kind']}):",
              f"  FLOPs     {_si(res['flops_per_step'], 'FLOP')}",
              f"  bytes     {_si(res['bytes_per_step'], 'B')} accessed",
              f"per epoch ({res['steps_per_epoch']} steps): {_si(res['flops_per_epoch'], 'FLOP')}",
              "", f"device memory of the training epoch: {_mib(res['memory_bytes'])} per device "
                  f"(arguments {_mib(mem['argument'])}, outputs {_mib(mem['output'])}, of which donated "
                  f"{_mib(mem['alias'])}, temporaries {_mib(mem['temp'])})"]
    if d["memory_limit_bytes"] is None:
        lines.append(f"  ({d['platform']} reports no memory limit)")
    else:
        verdict = "fits" if res["fits"] else "DOES NOT FIT"
        lines.append(f"  {verdict} in {_mib(d['memory_limit_bytes'])} per device")
    return "\n".join(lines)
