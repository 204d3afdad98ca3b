"""The run's configuration: one frozen, typed Config built from YAML and `--set` overrides.

    schema     every key: type, default, check, role (and the lists derived from roles)
    build      raw mapping -> checked Config
    overrides  YAML files, `--set` parsing, what `--resume --set` may change
    dotted     dotted keys over nested mappings and configs: get, put, flatten
"""
from vaecli.config.build import from_dict
from vaecli.config.overrides import (apply_overrides, apply_resume_overrides, dump_yaml, load, parse_override,
                                     read_yaml, replace, resumable, to_dict)
from vaecli.config.schema import (REPLICA_KEYS, RESUMABLE, ROLES, UNCOMPILED, CheckpointConfig, Config, DataConfig,
                                  DiscriminatorConfig,
                                  EvalConfig, FlowConfig, LogConfig, MlflowConfig, ModelConfig, ObjectiveConfig,
                                  OptimConfig, PriorConfig, TrainConfig, WandbConfig, keys,
                                  summarize)

__all__ = ["Config", "DataConfig", "ModelConfig", "FlowConfig", "TrainConfig", "OptimConfig", "ObjectiveConfig",
           "EvalConfig", "CheckpointConfig", "DiscriminatorConfig", "LogConfig", "WandbConfig", "MlflowConfig", "PriorConfig", "ROLES", "REPLICA_KEYS",
           "RESUMABLE", "UNCOMPILED", "keys", "summarize", "from_dict", "load", "read_yaml", "parse_override",
           "apply_overrides", "apply_resume_overrides", "resumable", "to_dict", "dump_yaml", "replace"]
