"""DomainNet (Peng et al., ICCV 2019): 6 domains, 345 classes, about 0.6 million images, as
TLlib reads it (``tllib/vision/datasets/domainnet.py``, thuml/Transfer-Learning-Library: the
class order and the official ``{domain}_train.txt`` / ``{domain}_test.txt`` image lists) and
as DomainBed lays it out (``domain_net/domain/class/image``). Too large to decode into
memory at 224 pixels: read it with a domain and split at a time, or at a smaller ``size``."""

from __future__ import annotations

from scenarios.benchmarks.tree import ImageBenchmark, Layout

DOMAINNET_CLASSES = (  # TLlib's order: the labels of its image lists
    "aircraft_carrier", "airplane", "alarm_clock", "ambulance", "angel", "animal_migration",
    "ant", "anvil", "apple", "arm", "asparagus", "axe", "backpack", "banana", "bandage",
    "barn", "baseball", "baseball_bat", "basket", "basketball", "bat", "bathtub", "beach",
    "bear", "beard", "bed", "bee", "belt", "bench", "bicycle", "binoculars", "bird",
    "birthday_cake", "blackberry", "blueberry", "book", "boomerang", "bottlecap", "bowtie",
    "bracelet", "brain", "bread", "bridge", "broccoli", "broom", "bucket", "bulldozer", "bus",
    "bush", "butterfly", "cactus", "cake", "calculator", "calendar", "camel", "camera",
    "camouflage", "campfire", "candle", "cannon", "canoe", "car", "carrot", "castle", "cat",
    "ceiling_fan", "cello", "cell_phone", "chair", "chandelier", "church", "circle",
    "clarinet", "clock", "cloud", "coffee_cup", "compass", "computer", "cookie", "cooler",
    "couch", "cow", "crab", "crayon", "crocodile", "crown", "cruise_ship", "cup", "diamond",
    "dishwasher", "diving_board", "dog", "dolphin", "donut", "door", "dragon", "dresser",
    "drill", "drums", "duck", "dumbbell", "ear", "elbow", "elephant", "envelope", "eraser",
    "eye", "eyeglasses", "face", "fan", "feather", "fence", "finger", "fire_hydrant",
    "fireplace", "firetruck", "fish", "flamingo", "flashlight", "flip_flops", "floor_lamp",
    "flower", "flying_saucer", "foot", "fork", "frog", "frying_pan", "garden", "garden_hose",
    "giraffe", "goatee", "golf_club", "grapes", "grass", "guitar", "hamburger", "hammer",
    "hand", "harp", "hat", "headphones", "hedgehog", "helicopter", "helmet", "hexagon",
    "hockey_puck", "hockey_stick", "horse", "hospital", "hot_air_balloon", "hot_dog",
    "hot_tub", "hourglass", "house", "house_plant", "hurricane", "ice_cream", "jacket", "jail",
    "kangaroo", "key", "keyboard", "knee", "knife", "ladder", "lantern", "laptop", "leaf",
    "leg", "light_bulb", "lighter", "lighthouse", "lightning", "line", "lion", "lipstick",
    "lobster", "lollipop", "mailbox", "map", "marker", "matches", "megaphone", "mermaid",
    "microphone", "microwave", "monkey", "moon", "mosquito", "motorbike", "mountain", "mouse",
    "moustache", "mouth", "mug", "mushroom", "nail", "necklace", "nose", "ocean", "octagon",
    "octopus", "onion", "oven", "owl", "paintbrush", "paint_can", "palm_tree", "panda",
    "pants", "paper_clip", "parachute", "parrot", "passport", "peanut", "pear", "peas",
    "pencil", "penguin", "piano", "pickup_truck", "picture_frame", "pig", "pillow",
    "pineapple", "pizza", "pliers", "police_car", "pond", "pool", "popsicle", "postcard",
    "potato", "power_outlet", "purse", "rabbit", "raccoon", "radio", "rain", "rainbow", "rake",
    "remote_control", "rhinoceros", "rifle", "river", "roller_coaster", "rollerskates",
    "sailboat", "sandwich", "saw", "saxophone", "school_bus", "scissors", "scorpion",
    "screwdriver", "sea_turtle", "see_saw", "shark", "sheep", "shoe", "shorts", "shovel",
    "sink", "skateboard", "skull", "skyscraper", "sleeping_bag", "smiley_face", "snail",
    "snake", "snorkel", "snowflake", "snowman", "soccer_ball", "sock", "speedboat", "spider",
    "spoon", "spreadsheet", "square", "squiggle", "squirrel", "stairs", "star", "steak",
    "stereo", "stethoscope", "stitches", "stop_sign", "stove", "strawberry", "streetlight",
    "string_bean", "submarine", "suitcase", "sun", "swan", "sweater", "swing_set", "sword",
    "syringe", "table", "teapot", "teddy-bear", "telephone", "television", "tennis_racquet",
    "tent", "The_Eiffel_Tower", "The_Great_Wall_of_China", "The_Mona_Lisa", "tiger", "toaster",
    "toe", "toilet", "tooth", "toothbrush", "toothpaste", "tornado", "tractor",
    "traffic_light", "train", "tree", "triangle", "trombone", "truck", "trumpet", "t-shirt",
    "umbrella", "underwear", "van", "vase", "violin", "washing_machine", "watermelon",
    "waterslide", "whale", "wheel", "windmill", "wine_bottle", "wine_glass", "wristwatch",
    "yoga", "zebra", "zigzag",
)
DOMAINNET_DOMAINS = ("clipart", "infograph", "painting", "quickdraw", "real", "sketch")
TRAIN = {"clipart": 33525, "infograph": 36023, "painting": 50416, "quickdraw": 120750,
         "real": 120906, "sketch": 48212}
TEST = {"clipart": 14604, "infograph": 15582, "painting": 21850, "quickdraw": 51750,
        "real": 52041, "sketch": 20916}

DOMAINNET = ImageBenchmark(
    name="domainnet",
    title="DomainNet: 6 domains (clipart, infograph, painting, quickdraw, real, sketch), "
          "345 classes, 586,575 images with official train/test splits",
    reference="Peng et al., ICCV 2019; TLlib tllib/vision/datasets/domainnet.py; DomainBed "
              "domainbed/datasets.py (DomainNet)",
    source="ai.bu.edu/M3SDA (the cleaned release) with TLlib's image_list archive "
           "(tllib/vision/datasets/domainnet.py), or DomainBed's scripts/download.py",
    classes=DOMAINNET_CLASSES,
    counts={d: TRAIN[d] + TEST[d] for d in DOMAINNET_DOMAINS},
    splits={"train": TRAIN, "test": TEST},
    counts_note=("; these counts are the original release's split lists: the cleaned release "
                 "TLlib recommends may differ, and a complete copy of it that does reads "
                 "with check = 'layout'"),
    layouts=(
        Layout("tllib", ("domainnet", "DomainNet"), {d: d for d in DOMAINNET_DOMAINS},
               lists={d: f"image_list/{d}_{{split}}.txt" for d in DOMAINNET_DOMAINS}),
        Layout("domainbed", ("domain_net",), {d: d for d in DOMAINNET_DOMAINS}),
    ))
