"""Training: from `vae train`'s arguments to finished run folders.

    launch    the command's arguments -> the programs to train (no JAX at import)
    replicas  --seeds / --sweep: the configs of replicas sharing one compiled program
    start     a new run: first files, state at step 0
    resume    a run folder continued from its latest checkpoint
    loop      the one training loop (`session`) around the compiled epoch: the life of an epoch
    records   what passes between the loop's parts, as typed records
    due       what is due after an epoch (validation, pictures, save, end): one rule
    log_point an epoch's bookkeeping, slot by slot: log, validate, draw, save, fail
    occupants a program's slots on the host between epochs: state, recorders, counters
    slots     the slots' policy at each epoch boundary (`vae tune` refills them)
    replica_axis  the host's replica axis (one run is one replica)
    program   what one program compiles: epoch, validation, pictures
    pictures  the grids written at each evaluation
    outcomes  how a run ends: completed, stopped early, paused, failed
    stops     time limits, early stopping, signals
    progress  the progress bar or lines on stderr
    dry_run   `vae show`: the epoch compiled from shapes, measured, not run
"""
