"""Download sources of each dataset, and the checksums that identify the official files.

The MNIST, Imagenette and ILSVRC2012 MD5s are the ones torchvision 0.29 checks (`torchvision/datasets/mnist.py`,
`imagenette.py`, `imagenet.py`). The LFW MD5s are those of torchvision's `lfw.py`. The SHA256 of the figshare
copy of `lfw.tgz` is the one scikit-learn's `fetch_lfw_people` checks.

The `*_CONTENT_DIGEST` constants are `manifest.combined_digest` over the SHA256 of every image of a set, keyed by
its path in the written layout. One constant identifies an extracted set of 13,233 images without listing them.
"""

from __future__ import annotations

from cnnrepro.data.fetch import RemoteFile

# ---- MNIST: the `.gz` files, verified by the MD5 of their decompressed content (see RemoteFile).
MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
MNIST_FILES = {
    # name: (MD5 of the official .gz, MD5 of the decompressed IDX file)
    "t10k-images-idx3-ubyte.gz": ("9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte.gz": ("ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637"),
    "train-images-idx3-ubyte.gz": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte.gz": ("d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624"),
}
MNIST_TRAIN_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")


def mnist_remote(name: str) -> RemoteFile:
    _, content_md5 = MNIST_FILES[name]
    return RemoteFile(name, tuple(base + name for base in MNIST_MIRRORS), content_md5=content_md5)


# ---- LFW (Huang et al. 2007). The UMass host has been unreachable at times; figshare mirrors the original
# archive and the pairs files for scikit-learn. The deep-funneled archive has no mirror besides the Internet
# Archive's copy of the UMass page.
LFW_HOSTS = ("https://vis-www.cs.umass.edu/lfw/", "http://vis-www.cs.umass.edu/lfw/")
_FIGSHARE = "https://ndownloader.figshare.com/files/"
LFW_PROTOCOL_MD5 = {
    "pairs.txt": "9f1ba174e4e1c508ff7cdf10ac338a7d",
    "pairsDevTest.txt": "5132f7440eb68cf58910c8a45a2ac10b",
    "pairsDevTrain.txt": "4f27cbf15b2da4a85c1907eb4181ad21",
    "people.txt": "450f0863dd89e85e73936a6d71a3474b",
    "peopleDevTest.txt": "e4bf5be0a43b5dcd9dc5ccfcb8fb19c5",
    "peopleDevTrain.txt": "54eaac34beb6d042ed3a7d883e247a21",
    "lfw-names.txt": "a6d0a479bd074669f656265a6e693f6d",
}
_LFW_FIGSHARE_IDS = {"pairs.txt": "5976006", "pairsDevTest.txt": "5976009", "pairsDevTrain.txt": "5976012"}


def lfw_protocol_remote(name: str) -> RemoteFile:
    urls = [host + name for host in LFW_HOSTS]
    if name in _LFW_FIGSHARE_IDS:
        urls.append(_FIGSHARE + _LFW_FIGSHARE_IDS[name])
    return RemoteFile(name, tuple(urls), md5=LFW_PROTOCOL_MD5[name])


LFW_ARCHIVES = {
    "deepfunneled": RemoteFile(
        "lfw-deepfunneled.tgz",
        (
            *(host + "lfw-deepfunneled.tgz" for host in LFW_HOSTS),
            "https://web.archive.org/web/20231118124720if_/https://vis-www.cs.umass.edu/lfw/lfw-deepfunneled.tgz",
        ),
        md5="68331da3eb755a505a502b5aacb3c201",
    ),
    "original": RemoteFile(
        "lfw.tgz",
        (*(host + "lfw.tgz" for host in LFW_HOSTS), _FIGSHARE + "5976018"),
        md5="a17d05bd522c52d84eca14327a23d494",
        sha256="055f7d9c632d7370e6fb4afc7468d40f970c34a80d4c6f50ffec63f5a8d536c0",
    ),
}
# Top-level folder inside each archive, and inside an offline mirror's lfw/ folder.
LFW_ARCHIVE_ROOT = {"deepfunneled": "lfw-deepfunneled", "original": "lfw"}
LFW_IMAGE_COUNT = 13_233
# Content digests of the 13,233 images as `<Name>/<Name>_NNNN.jpg`: the deep-funneled set of the LFW website's
# repository, and the original set of lfw.tgz (from the per-image SHA256s of its Git LFS copy).
LFW_CONTENT_DIGEST = {
    "deepfunneled": "671d2a790a1bc200b41bed03b7b5fd6d4dbf17d75bbc7d88cd3da5c5ed3801af",
    "original": "636114b85305757b195d628d70a3fa172ff632bb4799c0fa33dbf016d2deac19",
}

# ---- ORL / AT&T face database: 40 people x 10 greyscale 92x112 PGM images, `s<person>/<n>.pgm`.
# The host publishes no checksum of the archive, so the extracted images are checked against ORL_CONTENT_DIGEST.
ORL_ARCHIVE = RemoteFile(
    "att_faces.zip",
    ("https://www.cl.cam.ac.uk/Research/DTG/attarchive/pub/data/att_faces.zip",),
    checked_after_extraction=True,
)
ORL_CONTENT_DIGEST = "9972801133ec8ba8b06221a0f2c7c087c2e2a8d99a5fdd0ddfbf90beb82d5ac3"
ORL_IMAGE_COUNT = 400

# ---- ImageNet. Imagenette (fast.ai) full-size archive; ILSVRC2012 only from archives the user supplies.
IMAGENETTE_ARCHIVE = RemoteFile(
    "imagenette2.tgz",
    ("https://s3.amazonaws.com/fast-ai-imageclas/imagenette2.tgz",),
    md5="fe2fc210e6bb7c5664d602c3cd71e612",
)
# SHA256 of the five metadata files the ImageNet reader uses (see cnnrepro.data.imagenet).
IMAGENET_META_SHA256 = {
    "ILSVRC2012_validation_ground_truth.txt": "88d44095bd81cb785618db8e72eeb025fa1f646adf359d9b0efbf625244e0df3",
    "map_clsloc.txt": "25d91744b49f9629e3c33fa42cf421b00c1839b3802daf82d94648740844e947",
    "LOC_synset_mapping.txt": "acf75ef0abe89694b19056e0796401068b459c457baa30335f240c7692857355",
    "LOC_val_solution.csv": "09811d286325caee803bdeb74d536ece564aa6faf1ebe1e839c70981f3ce9788",
    "imagenet_class_index.json": "ecae206bed9024d38507c0c6a3f8c4dc079f465ad34e44c3ffd0ea5ddf6cfa50",
}
ILSVRC2012_ARCHIVES = {
    "train": "ILSVRC2012_img_train.tar",
    "val": "ILSVRC2012_img_val.tar",
    "devkit": "ILSVRC2012_devkit_t12.tar.gz",
}
# MD5s of the ILSVRC2012 archives, as torchvision's ImageNet class checks them.
ILSVRC2012_MD5 = {
    "ILSVRC2012_img_train.tar": "1d675b47d978889d74fa0da5fadfb00e",
    "ILSVRC2012_img_val.tar": "29b22e2961454d5413ddabcf34fc5622",
    "ILSVRC2012_devkit_t12.tar.gz": "fa75699e90414af021442c21a62c3abf",
}
