"""The papers' published numbers that the report sets beside the reproduced ones.

Sources: LeCun et al. 1998 (Proc. IEEE), section III-C; Krizhevsky et al. 2012 (NIPS), Table 2; Taigman et al.
2014 (CVPR), Tables 1 and 3; Szegedy et al. 2015 (arXiv:1409.4842), Tables 2 and 3. Errors and accuracies are
fractions (0.0095 is 0.95%).
"""

from __future__ import annotations

LENET5_TEST_ERROR = 0.0095  # MNIST test set, no distortions

# AlexNet on ILSVRC-2012: (row, top-1 val, top-5 val, top-5 test); None where the paper gives no number.
ALEXNET_TABLE2 = [
    ("1 CNN", 0.407, 0.182, None),
    ("5 CNNs", 0.381, 0.164, 0.164),
    ("1 CNN*", 0.390, 0.166, None),
    ("7 CNNs*", 0.367, 0.154, 0.153),
]

# DeepFace on SFC (Table 1), classification error on the held-out 5% of each identity's images.
DEEPFACE_TABLE1 = {
    "DF-1.5K": 0.0700,
    "DF-3.3K": 0.0722,
    "DF-4.4K": 0.0874,
    "DF-10%": 0.207,
    "DF-sub1": 0.112,
    "DF-sub2": 0.126,
    "DF-sub3": 0.135,
}

# DeepFace on LFW View 2 (Table 3): (method, protocol, mean accuracy).
DEEPFACE_TABLE3 = [
    ("DeepFace-single", "unsupervised", 0.9592),
    ("DeepFace-single", "image-restricted", 0.9700),
    ("DeepFace-ensemble", "image-restricted", 0.9715),
    ("DeepFace-ensemble", "unrestricted", 0.9735),
    ("Human, cropped", "-", 0.9753),
]

# ILSVRC 2014 classification results, top-5 error on the test set (GoogLeNet Table 2).
GOOGLENET_TABLE2 = [
    ("SuperVision", 2012, 0.164, "no"),
    ("SuperVision", 2012, 0.153, "ImageNet 22k"),
    ("Clarifai", 2013, 0.117, "no"),
    ("Clarifai", 2013, 0.112, "ImageNet 22k"),
    ("MSRA", 2014, 0.0735, "no"),
    ("VGG", 2014, 0.0732, "no"),
    ("GoogLeNet", 2014, 0.0667, "no"),
]

# GoogLeNet Table 3, top-5 error on ILSVRC 2012 validation: (models, crops) -> error.
GOOGLENET_TABLE3 = {(1, 1): 0.1007, (1, 10): 0.0915, (1, 144): 0.0789, (7, 1): 0.0809, (7, 10): 0.0762, (7, 144): 0.0667}
