"""Office-31 (Saenko et al., ECCV 2010) and Office-Home (Venkateswara et al., CVPR 2017), as
TLlib reads them (``tllib/vision/datasets/office31.py``, ``officehome.py``, thuml/
Transfer-Learning-Library: its class orders and image lists) and as DomainBed and the
original archives lay them out (``root/domain/class/image``)."""

from __future__ import annotations

from scenarios.benchmarks.tree import ImageBenchmark, Layout

OFFICE31_CLASSES = (
    "back_pack", "bike", "bike_helmet", "bookcase", "bottle", "calculator", "desk_chair",
    "desk_lamp", "desktop_computer", "file_cabinet", "headphones", "keyboard",
    "laptop_computer", "letter_tray", "mobile_phone", "monitor", "mouse", "mug",
    "paper_notebook", "pen", "phone", "printer", "projector", "punchers", "ring_binder", "ruler",
    "scissors", "speaker", "stapler", "tape_dispenser", "trash_can")
OFFICE31_DIRS = {d: f"{d}/images" for d in ("amazon", "dslr", "webcam")}

OFFICE31 = ImageBenchmark(
    name="office31",
    title="Office-31: 3 domains (amazon, dslr, webcam), 31 office objects, 4,110 images",
    reference="Saenko et al., ECCV 2010; TLlib tllib/vision/datasets/office31.py",
    source="TLlib's download list (tllib/vision/datasets/office31.py) or the original "
           "domain_adaptation_images archive",
    classes=OFFICE31_CLASSES,
    counts={"amazon": 2817, "dslr": 498, "webcam": 795},
    layouts=(
        Layout("tllib", ("office31", "Office31"), OFFICE31_DIRS,
               lists={d: f"image_list/{d}.txt" for d in OFFICE31_DIRS}),
        Layout("folders", ("office31", "Office31", "domain_adaptation_images"), OFFICE31_DIRS),
        Layout("flat", ("office31", "Office31"), {d: d for d in OFFICE31_DIRS}),
    ))

OFFICE_HOME_CLASSES = (  # TLlib's order: the labels of its image lists
    "Drill", "Exit_Sign", "Bottle", "Glasses", "Computer", "File_Cabinet", "Shelf", "Toys",
    "Sink", "Laptop", "Kettle", "Folder", "Keyboard", "Flipflops", "Pencil", "Bed", "Hammer",
    "ToothBrush", "Couch", "Bike", "Postit_Notes", "Mug", "Webcam", "Desk_Lamp", "Telephone",
    "Helmet", "Mouse", "Pen", "Monitor", "Mop", "Sneakers", "Notebook", "Backpack",
    "Alarm_Clock", "Push_Pin", "Paper_Clip", "Batteries", "Radio", "Fan", "Ruler", "Pan",
    "Screwdriver", "Trash_Can", "Printer", "Speaker", "Eraser", "Bucket", "Chair", "Calendar",
    "Calculator", "Flowers", "Lamp_Shade", "Spoon", "Candles", "Clipboards", "Scissors", "TV",
    "Curtains", "Fork", "Soda", "Table", "Knives", "Oven", "Refrigerator", "Marker")
OFFICE_HOME_DOMAINS = ("Art", "Clipart", "Product", "Real_World")

OFFICE_HOME = ImageBenchmark(
    name="office-home",
    title="Office-Home: 4 domains (Art, Clipart, Product, Real_World), 65 classes, "
          "15,588 images",
    reference="Venkateswara et al., CVPR 2017; TLlib tllib/vision/datasets/officehome.py; "
              "DomainBed domainbed/datasets.py (OfficeHome)",
    source="TLlib's download list (tllib/vision/datasets/officehome.py), DomainBed's "
           "domainbed/scripts/download.py or hemanthdv.org/OfficeHome-Dataset",
    classes=OFFICE_HOME_CLASSES,
    counts={"Art": 2427, "Clipart": 4365, "Product": 4439, "Real_World": 4357},
    layouts=(
        Layout("tllib", ("office-home", "OfficeHome", "officehome"),
               {d: d for d in OFFICE_HOME_DOMAINS},
               lists={d: f"image_list/{d}.txt" for d in OFFICE_HOME_DOMAINS}),
        Layout("domainbed", ("office_home", "OfficeHomeDataset_10072016"),
               {**{d: d for d in OFFICE_HOME_DOMAINS}, "Real_World": "Real World"}),
    ))
