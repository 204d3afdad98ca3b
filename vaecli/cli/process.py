"""What a `vae` process does around a command: the compile cache it asks for, the libraries
it quiets, stdout kept for the command's results, progress reported on stderr, and how an
error becomes one line on stderr and an exit code (2 usage/config, 1 at run time, an I/O
fault included, 130 on Ctrl-C; `--debug` shows the traceback instead).

Kept apart from the command modules, which only declare the commands and their options;
imports nothing heavy (the commands import JAX when they need it).
"""
from __future__ import annotations

import contextlib
import os
import sys

import typer

from vaecli import files, progress

# Set by the CLI's top-level options (--debug, --compile-cache) and by main_process; "results":
# the stream of the command's own output while it runs (see results_alone_on_stdout).
STATE = {"debug": False, "compile_cache": None, "own_process": False, "results": None}


def echo(text: str = "") -> None:
    """One line of the command's result: on the real stdout, whatever else writes to fd 1."""
    out = STATE["results"] or sys.stdout
    out.write(f"{text}\n")
    out.flush()


@contextlib.contextmanager
def results_alone_on_stdout():
    """While the command runs, fd 1 is a copy of stderr, and the command's results go to a
    copy of the real stdout (`echo`). Scripts read stdout (`RUN=$(vae train ...)`), and the
    libraries underneath print there as they please: TFDS its "Downloading and preparing"
    notes, TensorFlow and XLA from C++, Gloo its connection notes (`--distributed`), a
    subprocess through the inherited descriptor. In an in-process runner (tests) stdout is a
    Python object with no descriptor: there the Python-level prints are sent to stderr the
    same way."""
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
        err = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        fd = err = None
    if fd is None:
        STATE["results"], sys.stdout = sys.stdout, sys.stderr
        try:
            yield
        finally:
            sys.stdout, STATE["results"] = STATE["results"], None
        return
    real = os.dup(fd)
    os.dup2(err, fd)
    STATE["results"] = os.fdopen(os.dup(real), "w", encoding=sys.stdout.encoding, errors=sys.stdout.errors)
    try:
        yield
    finally:
        sys.stdout.flush()
        _flush_c_stdio()  # what native code left in C's stdout buffer goes where it was printed
        STATE["results"].close()
        STATE["results"] = None
        os.dup2(real, fd)
        os.close(real)


def _flush_c_stdio() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no C library to reach (not Linux or macOS)
        pass


def use_compile_cache() -> None:
    """Turn on JAX's persistent compilation cache (or off) before anything compiles.
    Called by the commands that compile, after their argument checks (it imports JAX)."""
    from vaecli.compiled import cache

    setting = STATE["compile_cache"]
    if setting is not None and setting.strip().lower() == "off":
        cache.enable(None)
        return
    if not setting:
        setting = files.cache_home() / "jax"
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
    """Call fn() with stdout kept for its results and progress on stderr; turn library
    errors into one line and an exit code."""
    quiet_libraries()
    with results_alone_on_stdout(), progress.reporting("auto"):
        return _reported(fn)


def _reported(fn):
    from vaecli.errors import Interrupted, OutOfTime, StorageError, VaeError

    try:
        return fn()
    except Interrupted as e:
        typer.secho(f"interrupted: {e}", err=True, fg=typer.colors.YELLOW)
        raise typer.Exit(e.exit_code)
    except OutOfTime as e:  # not a failure: exit 3 says "run me again with more time"
        typer.secho(f"out of time: {e}", err=True, fg=typer.colors.YELLOW)
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
            for stream in (STATE["results"], sys.stdout, sys.stderr):
                if stream is not None:
                    stream.flush()
            os._exit(130)
        raise typer.Exit(130)
    except OSError as e:  # an I/O fault no command turned into its own line: the path, the cause, the fix
        if STATE["debug"]:
            raise
        from vaecli.errors import storage_error

        typer.secho(f"error: {storage_error(e, verb=None)}", err=True, fg=typer.colors.RED)
        sys.unraisablehook = lambda unraisable: None
        raise typer.Exit(StorageError.exit_code)


def spread_replicas_over_cores(argv: list[str]) -> None:
    """Before JAX starts: a command that trains replicas as one program (`vae train --seeds
    or --sweep`, `vae tune`) sees the CPU's cores as that many host devices, over which the
    replicas are laid out (vaecli.compiled.devices.replica_layout). Only where the user has
    not chosen a device count in XLA_FLAGS; single runs keep one CPU device, so their
    program is unchanged. The flag concerns the CPU platform only: GPUs are not affected."""
    flags = os.environ.get("XLA_FLAGS", "")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1  # Slurm's share
    command = next((a for a in argv[1:] if not a.startswith("-")), None)
    replicas = command == "tune" or (command == "train" and any(
        a in ("--seeds", "--sweep") or a.startswith(("--seeds=", "--sweep=")) for a in argv))
    if replicas and cores > 1 and "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={cores}".strip()
