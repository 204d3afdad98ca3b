"""The run folder: the contract between the commands (train writes it, the others read it).

    layout       its files, its name, opening one, the training lock, the environment record
    checkpoints  Orbax checkpoints, sealed with file sums; the only module that talks to Orbax
    restore      which checkpoint `--step` names, and the state restored at it
    metrics      metrics.jsonl and TensorBoard events
    recorder     the one writer of a run folder while it trains
    trackers     W&B and MLflow mirrors of what the folder holds
    table        `vae runs`: rows over many folders; table_format: those rows as text
"""
