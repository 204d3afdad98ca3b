"""Datasets: TFDS names -> prepared, cached uint8 arrays -> the logical splits.

    splits       Split, load_split (binarization modes), describe_train, KNOWN
    cache        vaecli's compact array cache (write_cache, list_cache)
    tfds_source  preparing a dataset through TFDS (TensorFlow imported only there)
"""
from vaecli.data.cache import cache_folder, default_cache_dir, list_cache, write_cache
from vaecli.data.splits import KNOWN, SPLITS, Split, check_split, describe_train, load_split, prepare

__all__ = ["Split", "SPLITS", "KNOWN", "check_split", "load_split", "prepare", "describe_train", "write_cache",
           "cache_folder", "default_cache_dir", "list_cache"]
