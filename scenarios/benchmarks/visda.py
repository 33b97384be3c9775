"""VisDA-2017 classification (Peng et al., 2017): synthetic renderings (``train``) to real
photographs (``validation``), 12 classes, as TLlib reads it (``tllib/vision/datasets/
visda2017.py``, thuml/Transfer-Learning-Library: class order and image lists)."""

from __future__ import annotations

from scenarios.benchmarks.tree import ImageBenchmark, Layout

VISDA_DIRS = {"Synthetic": "train", "Real": "validation"}
VISDA2017 = ImageBenchmark(
    name="visda2017",
    title="VisDA-2017: Synthetic (152,397 renderings) to Real (55,388 photos), 12 classes",
    reference="Peng et al., arXiv:1710.06924; TLlib tllib/vision/datasets/visda2017.py",
    source="TLlib's download list (tllib/vision/datasets/visda2017.py) or the VisDA-2017 "
           "challenge release (train.tar, validation.tar)",
    classes=("aeroplane", "bicycle", "bus", "car", "horse", "knife", "motorcycle", "person",
             "plant", "skateboard", "train", "truck"),
    counts={"Synthetic": 152397, "Real": 55388},
    layouts=(
        Layout("tllib", ("visda-2017", "visda2017", "VisDA2017"), VISDA_DIRS,
               lists={"Synthetic": "image_list/train.txt", "Real": "image_list/validation.txt"}),
        Layout("folders", ("visda-2017", "visda2017", "VisDA2017"), VISDA_DIRS),
    ))
