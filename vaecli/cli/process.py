"""What a `vae` process does around a command: the compile cache it asks for, the libraries
it quiets, and how an error becomes one line on stderr and an exit code (2 usage/config, 1 at
run time, an I/O fault included, 130 on Ctrl-C; `--debug` shows the traceback instead).

Kept apart from the command modules, which only declare the commands and their options;
imports nothing heavy (the commands import JAX when they need it).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

# Set by the CLI's top-level options (--debug, --compile-cache) and by main_process.
STATE = {"debug": False, "compile_cache": None, "own_process": False}


def use_compile_cache() -> None:
    """Turn on JAX's persistent compilation cache (or off) before anything compiles.
    Called by the commands that compile, after their argument checks (it imports JAX)."""
    from vaecli.compiled import cache

    setting = STATE["compile_cache"]
    if setting is not None and setting.strip().lower() == "off":
        cache.enable(None)
        return
    if not setting:
        setting = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vaecli" / "jax"
    cache.enable(setting)


def quiet_libraries() -> None:
    # TensorFlow (used only to prepare TFDS data) and absl are chatty on import.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import logging

    # Orbax logs routine notes as warnings, and a failed background save as errors with
    # tracebacks: vaecli reports that failure itself, in one line (--debug shows them).
    logging.getLogger("absl").setLevel(logging.ERROR if STATE["debug"] else logging.CRITICAL)
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.ERROR)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    if not STATE["debug"]:
        sys.unraisablehook = _drop_closed_loop_callbacks


def _drop_closed_loop_callbacks(unraisable) -> None:
    """After a failed Orbax save, TensorStore callbacks still fire into the asyncio loop of the
    write that failed, which is closed; Python reports each as an ignored exception with a
    traceback. They change nothing (the failure itself is reported in one line): drop them."""
    if isinstance(unraisable.exc_value, RuntimeError) and "Event loop is closed" in str(unraisable.exc_value):
        return
    sys.__unraisablehook__(unraisable)


def run(fn):
    """Call fn(); turn library errors into one line and an exit code."""
    from vaecli.errors import Interrupted, StorageError, VaeError

    quiet_libraries()
    try:
        return fn()
    except Interrupted as e:
        typer.secho(f"interrupted: {e}", err=True, fg=typer.colors.YELLOW)
        raise typer.Exit(e.exit_code)
    except VaeError as e:
        if STATE["debug"]:  # the traceback instead of the one line; the exit code stays the error's
            import traceback

            traceback.print_exc()
            raise typer.Exit(e.exit_code)
        typer.secho(f"error: {e}", err=True, fg=typer.colors.RED)
        # A failed Orbax read can leave coroutines that asyncio reports ("Exception ignored
        # in ...") while the interpreter shuts down: the one line above is the whole story.
        sys.unraisablehook = lambda unraisable: None
        raise typer.Exit(e.exit_code)
    except KeyboardInterrupt:
        if STATE["debug"]:
            raise
        typer.secho("interrupted", err=True, fg=typer.colors.RED)
        if STATE.get("own_process"):
            # A second signal stops at once: a compiled call or an Orbax/TensorStore thread may
            # still be running, and tearing the interpreter down under them can crash
            # (SIGSEGV at exit). The summary already says "interrupted": leave without teardown.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        raise typer.Exit(130)
    except OSError as e:  # an I/O fault no command turned into its own line: the path, the cause, the fix
        if STATE["debug"]:
            raise
        from vaecli.errors import storage_error

        typer.secho(f"error: {storage_error(e, verb=None)}", err=True, fg=typer.colors.RED)
        sys.unraisablehook = lambda unraisable: None
        raise typer.Exit(StorageError.exit_code)
