"""Training: from `vae train`'s arguments to finished run folders.

    launch    the command's arguments -> the programs to train (no JAX at import)
    replicas  --seeds / --sweep: the configs of replicas sharing one compiled program
    start     a new run: first files, state at step 0
    resume    a run folder continued from its latest checkpoint
    loop      the one training loop (`session`) around the compiled epoch
    slots     a program's replica slots on the host between epochs
    program   what one program compiles: epoch, validation, pictures
    pictures  the grids written at each evaluation
    outcomes  how a run ends: completed, stopped early, paused, failed
    stops     time limits, early stopping, signals
    progress  the progress bar or lines on stderr
    dry_run   `vae show`: the epoch compiled from shapes, measured, not run
"""
