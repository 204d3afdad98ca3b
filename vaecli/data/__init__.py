"""Datasets: TFDS names (or vaecli's procedural ones) -> prepared, cached uint8 arrays -> the
logical splits.

    splits         Split, load_split (binarization modes), describe_train, KNOWN
    cache          vaecli's compact array cache (write_cache, list_cache)
    tfds_source    preparing a dataset through TFDS (TensorFlow imported only there)
    factors        datasets with known factors: their splits, factor table, PROCEDURAL datasets
    toy_sprites    the procedural toy-sprites grid, drawn with Pillow
    factor_images  images for given factor values (drawn, or looked up in the train split)
    own_source     images of one's own (data.source folder | arrays) in the cache, and their splits
    image_folder   a folder of image files -> arrays and labels (Pillow)
    array_file     an .npz / .npy -> arrays and labels, checked
"""
from vaecli.data.cache import cache_folder, default_cache_dir, list_cache, write_cache
from vaecli.data.factor_images import FactorImages, load_factor_images
from vaecli.data.factors import PROCEDURAL
from vaecli.data.splits import (KNOWN, SPLITS, Split, check_obtainable, check_split, dataset_name, describe_train,
                                load_model_split, load_split, prepare)

__all__ = ["Split", "SPLITS", "KNOWN", "check_split", "check_obtainable", "load_split", "load_model_split", "dataset_name", "prepare", "describe_train", "write_cache",
           "cache_folder", "default_cache_dir", "list_cache", "PROCEDURAL", "FactorImages", "load_factor_images"]
