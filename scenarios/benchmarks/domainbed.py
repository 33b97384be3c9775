"""DomainBed's image benchmarks besides Office-Home and DomainNet (Gulrajani & Lopez-Paz,
ICLR 2021; ``domainbed/datasets.py``, facebookresearch/DomainBed): PACS, VLCS and
TerraIncognita, in the layout its ``scripts/download.py`` leaves (``root/domain/class/
image``, read with torchvision's ``ImageFolder``: classes in sorted order); PACS also as
its release unpacks (``PACS/kfold/domain/class/image``)."""

from __future__ import annotations

from scenarios.benchmarks.tree import ImageBenchmark, Layout

PACS_DOMAINS = ("art_painting", "cartoon", "photo", "sketch")
PACS = ImageBenchmark(
    name="pacs",
    title="PACS: 4 domains (art_painting, cartoon, photo, sketch), 7 classes, 9,991 images",
    reference="Li et al., ICCV 2017; DomainBed domainbed/datasets.py (PACS)",
    source="DomainBed's domainbed/scripts/download.py (download_pacs) or "
           "domaingeneralization.github.io",
    classes=("dog", "elephant", "giraffe", "guitar", "horse", "house", "person"),
    counts={"art_painting": 2048, "cartoon": 2344, "photo": 1670, "sketch": 3929},
    layouts=(Layout("domainbed", ("PACS", "pacs"), {d: d for d in PACS_DOMAINS}),
             Layout("kfold", ("PACS", "pacs"), {d: f"kfold/{d}" for d in PACS_DOMAINS})))

VLCS_DOMAINS = ("Caltech101", "LabelMe", "SUN09", "VOC2007")
VLCS = ImageBenchmark(
    name="vlcs",
    title="VLCS: 4 domains (Caltech101, LabelMe, SUN09, VOC2007), 5 classes, 10,729 images",
    reference="Fang et al., ICCV 2013; DomainBed domainbed/datasets.py (VLCS)",
    source="DomainBed's domainbed/scripts/download.py (download_vlcs)",
    classes=("bird", "car", "chair", "dog", "person"),
    counts={"Caltech101": 1415, "LabelMe": 2656, "SUN09": 3282, "VOC2007": 3376},
    layouts=(Layout("domainbed", ("VLCS", "vlcs"), {d: d for d in VLCS_DOMAINS}),))

TERRA_DOMAINS = ("location_100", "location_38", "location_43", "location_46")
TERRA_INCOGNITA = ImageBenchmark(
    name="terra-incognita",
    title="TerraIncognita: 4 camera-trap locations, 10 classes, 24,330 images "
          "(DomainBed's subset)",
    reference="Beery et al., ECCV 2018; DomainBed domainbed/datasets.py (TerraIncognita) "
              "and scripts/download.py (download_terra_incognita)",
    source="DomainBed's domainbed/scripts/download.py (download_terra_incognita builds the "
           "four location folders from the Caltech Camera Traps release)",
    classes=("bird", "bobcat", "cat", "coyote", "dog", "empty", "opossum", "rabbit", "raccoon",
             "squirrel"),
    counts={"location_100": 4741, "location_38": 9736, "location_43": 3970,
            "location_46": 5883},
    counts_note=("; these per-location counts, as other papers list them, were not checked "
                 "against DomainBed's download script, and DomainBed's paper reports 24,788 "
                 "images in all: a complete copy made by that script that differs reads "
                 "with check = 'layout'"),
    layouts=(Layout("domainbed", ("terra_incognita", "TerraIncognita"),
                    {d: d for d in TERRA_DOMAINS}),))
