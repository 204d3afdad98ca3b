"""`vae data prepare` and `vae data list`: the dataset cache ahead of time."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from vaecli.cli.app import JsonOpt, app
from vaecli.cli.process import echo, run as _run


data_app = typer.Typer(help="The data cache: prepare datasets ahead of time, list what is cached.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("prepare")
def data_prepare(
    dataset: Annotated[str, typer.Argument(help="A TFDS name (binarized_mnist, mnist, fashion_mnist, ...), or with "
                                                "--source folder|arrays the folder of images or the .npz file.")],
    source: Annotated[str, typer.Option("--source", help="tfds, folder or arrays (data.source).")] = "tfds",
    image_size: Annotated[Optional[str], typer.Option(
        "--image-size", help="folder: resize to HxW as the images are read (data.image_size), e.g. 64x64.")] = None,
    manual_dir: Annotated[Optional[Path], typer.Option(
        "--manual-dir", help="Folder with the files TFDS would download (offline).")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(
        "--data-dir", help="TFDS data_dir (default: $TFDS_DATA_DIR, else ~/tensorflow_datasets).")] = None,
    cache_dir: Annotated[Optional[Path], typer.Option(
        "--cache-dir", help="vaecli's array cache (default: $XDG_CACHE_HOME/vaecli/data, else ~/.cache/vaecli/data).")] = None,
    as_json: JsonOpt = False,
):
    """Fill vaecli's array cache with DATASET (e.g. on a login node that has internet, before
    compute nodes that have none). Prints the cache folder."""

    def go():
        from vaecli import config as config_lib, data

        own = {"source": source, "path": dataset, "image_size": _size(image_size)} if source != "tfds" else \
            {"dataset": dataset, "source": source, **({"image_size": _size(image_size)} if image_size else {})}
        cfg = config_lib.from_dict({"data": {
            **own, "manual_dir": str(manual_dir) if manual_dir else None,
            "data_dir": str(data_dir) if data_dir else None, "cache_dir": str(cache_dir) if cache_dir else None}})
        index = data.prepare(cfg.data)
        folder = data.cache_folder(cfg.data)
        if as_json:
            echo(json.dumps({"dataset": dataset, "folder": str(folder), "splits": index["splits"]}, indent=2))
        else:
            echo(str(folder))

    _run(go)


def _size(text: Optional[str]):
    """'64x64' -> [64, 64] (config.from_dict checks the numbers)."""
    if text is None:
        return None
    try:
        return [int(v) for v in text.lower().split("x")]
    except ValueError:
        from vaecli.errors import UsageError

        raise UsageError(f"--image-size {text!r}: write HEIGHTxWIDTH, e.g. 64x64") from None


@data_app.command("list")
def data_list(
    cache_dir: Annotated[Optional[Path], typer.Option(
        "--cache-dir", help="vaecli's array cache (default: $XDG_CACHE_HOME/vaecli/data, else ~/.cache/vaecli/data).")] = None,
    as_json: JsonOpt = False,
):
    """What the cache holds: dataset, splits, image shapes, size on disk, folder."""

    def go():
        from vaecli import data

        entries = data.list_cache(cache_dir)
        if as_json:
            echo(json.dumps(entries, indent=2))
            return
        if not entries:
            typer.echo(f"no prepared datasets in {cache_dir or data.default_cache_dir()}", err=True)
            return
        rows = [("dataset", "split", "images", "shape", "pixels", "size", "folder")]
        for e in entries:
            for i, (split, s) in enumerate(e["splits"].items()):
                rows.append((e["dataset"] if i == 0 else "", split, str(s["num_examples"]),
                             "x".join(map(str, s["shape"])), "binary" if s["binary"] else "uint8",
                             f"{e['bytes'] / 2**20:.1f} MiB" if i == 0 else "", e["folder"] if i == 0 else ""))
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        for r in rows:
            echo("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())

    _run(go)
