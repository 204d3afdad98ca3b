"""The run folder: the contract between the commands (train writes it, the others read it).

    names        what its files and folders are called, and the outputs the commands write into it
    layout       its name, creating and opening one, the training lock, the environment record
    checkpoints  Orbax checkpoints, sealed with file sums; the only module that talks to Orbax
    restore      which checkpoint `--step` names, and the state restored at it (the one restore)
    evaluated    a checkpoint under evaluation: what every evaluation command and vaecli.load open
    metrics      metrics.jsonl and TensorBoard events
    recorder     the one writer of a run folder while it trains
    trackers     W&B and MLflow mirrors of what the folder holds
    table        `vae runs`: rows over many folders; table_format: those rows as text
"""
