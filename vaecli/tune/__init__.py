"""`vae tune`: Optuna searches whose trials train side by side as replicas of one program.

    launch  the command's arguments -> a new or resumed study (no JAX or Optuna at import)
    study   the study folder and the slot policy (ask, report, prune, refill)
    trial_value  what a trial is judged by: its validation ELBO, or the FID/KID of its samples
    storage where the study is kept (journal file or database) and the lock its workers share
    space   the `--space KEY=SPEC` spelling, checked like `--set`
    plot    the picture of the search
"""
