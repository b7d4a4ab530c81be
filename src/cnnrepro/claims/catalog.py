"""The eight claims of the chapter, with the sweeps that check them on the default (quick) profile.

Epoch overrides keep the whole set near an hour on 2 CPU cores. Each claim's `method` states them, and the
report prints them beside the result.
"""

from __future__ import annotations

from functools import partial

from cnnrepro.claims import direct, summaries
from cnnrepro.claims.registry import Claim, Variant, register

ALEXNET_FILES = ("metrics/train/alexnet.json", "plots/train/alexnet.csv", "metrics/evaluate/alexnet.json")
ALEXNET_EPOCHS = 15
# Every AlexNet variant spells out the four settings that some claim changes, so the activation, dropout and
# LRN/pooling claims produce identical params for their shared base variant and reuse its experiments.
ALEXNET_BASE = {"train.alexnet.activation": "relu", "train.alexnet.dropout": 0.5, "train.alexnet.lrn": True,
                "train.alexnet.overlapping_pool": True}
GOOGLENET_EPOCHS = 5
GOOGLENET_MEMBERS = 7

register(Claim(
    name="weight-sharing",
    title="Weight sharing: parameters against connections",
    text="A fully connected layer, a locally connected layer and a convolution over the same input have very "
         "different parameter counts for the same connections: in the 1-D example of 5 inputs and 5 outputs, "
         "25, 13 and 3 weights.",
    source="The chapter's 1-D example; LeNet-5 (LeCun et al. 1998, section II-B): 340,908 connections, 60,000 "
           "trainable parameters.",
    method="Builds the three 1-D layers in torch (receptive field 3, zero padding at the edges) and counts, per "
           "layer, the parameters with a nonzero gradient for a random input and the nonzero entries of the "
           "input-output Jacobian; then lists LeNet-5's layers as `cnnrepro describe lenet5` counts them. No "
           "training, no data.",
    seeds=(0,),
    minutes=0.1,
    measure=direct.weight_sharing,
))

register(Claim(
    name="conv-speed",
    title="Convolutions dominate the run time",
    text="Convolutions take most of LeNet-5's run time, and a CNN runs slower than a fully connected network "
         "with the same number of parameters.",
    source="The chapter; LeNet-5's 340,908 connections on 60,000 parameters (LeCun et al. 1998).",
    method="Times LeNet-5's layers on one batch of 256 MNIST test images (`cnnrepro describe`'s per-layer forward "
           "time, mean of 20 passes), then one forward and backward pass of LeNet-5 and of a one-hidden-layer MLP "
           "with the closest parameter count, fastest of 20 passes, on one CPU thread. A seed picks the batch and the "
           "initial weights.",
    seeds=(0, 1, 2),
    minutes=0.5,
    measure=direct.conv_speed,
))

register(Claim(
    name="activation",
    title="ReLU trains faster than a saturating activation",
    text="A network with ReLUs reaches a given training error several times faster than the same network with "
         "a saturating activation.",
    source="AlexNet (Krizhevsky et al. 2012, section 3.1, Figure 1): a 4-layer CNN on CIFAR-10 reaches 25% "
           "training error six times faster with ReLU than with tanh.",
    method=f"AlexNet on Imagenette (quick profile: 115 px, width 0.25), {ALEXNET_EPOCHS} epochs instead of the "
           f"profile's 30, ReLU against tanh with the same data and seeds; reports the epochs (interpolated "
           f"between epochs) to 70% training error, which a quick-profile AlexNet passes within its first "
           f"10 epochs, as the paper's 25% on CIFAR-10 lies early in its curves. The ReLU variant is the base AlexNet "
           f"shared with the dropout and LRN claims. The claim activation-lenet5 repeats the sweep on LeNet-5.",
    seed_keys=("train.alexnet.seed",),
    targets=("evaluate@alexnet",),
    overrides={"train.alexnet.epochs": ALEXNET_EPOCHS},
    variants=(Variant("relu", ALEXNET_BASE, "alexnet-base", "ReLU (paper)"),
              Variant("tanh", {**ALEXNET_BASE, "train.alexnet.activation": "tanh"}, "alexnet-tanh",
                      "tanh (saturating)")),
    files=ALEXNET_FILES,
    minutes=20,
    summarise=partial(summaries.activation, history="plots/train/alexnet.csv", target=0.70, fast="relu",
                      slow="tanh"),
))

register(Claim(
    name="activation-lenet5",
    title="ReLU against tanh on LeNet-5",
    text="A network with ReLUs reaches a given training error several times faster than the same network with "
         "a saturating activation.",
    source="AlexNet (Krizhevsky et al. 2012, section 3.1, Figure 1): a 4-layer CNN on CIFAR-10 reaches 25% "
           "training error six times faster with ReLU than with tanh.",
    method="LeNet-5 on MNIST with the quick profile's settings (12 epochs, 8,000 training digits), the paper's "
           "scaled tanh against ReLU with He-normal initial weights, same data and seeds; reports the epochs "
           "(interpolated between epochs) to 10% training error, which both pass within the run.",
    seed_keys=("train.lenet5.seed",),
    targets=("evaluate@lenet5",),
    variants=(Variant("relu", {"train.lenet5.activation": "relu"}, "lenet5-relu", "ReLU"),
              Variant("scaled_tanh", {"train.lenet5.activation": "scaled_tanh"}, "lenet5-tanh",
                      "1.7159 tanh(2a/3) (paper)")),
    files=("metrics/train/lenet5.json", "plots/train/lenet5.csv", "metrics/evaluate/lenet5.json"),
    minutes=6,
    summarise=partial(summaries.activation, history="plots/train/lenet5.csv", target=0.10, fast="relu",
                      slow="scaled_tanh"),
))

register(Claim(
    name="dropout",
    title="Dropout reduces overfitting and slows convergence",
    text="Without dropout AlexNet overfits; with dropout it needs about twice as many iterations to converge.",
    source="AlexNet (Krizhevsky et al. 2012, section 4.2).",
    method=f"AlexNet on Imagenette (quick profile: 115 px, width 0.25), {ALEXNET_EPOCHS} epochs instead of the "
           f"profile's 30, dropout 0 against 0.5 in the two fully connected layers. Overfitting is the validation "
           f"minus training error at the last epoch; convergence is the epochs to 60% training error.",
    seed_keys=("train.alexnet.seed",),
    targets=("evaluate@alexnet",),
    overrides={"train.alexnet.epochs": ALEXNET_EPOCHS},
    variants=(Variant("no-dropout", {**ALEXNET_BASE, "train.alexnet.dropout": 0.0}, "alexnet-nodropout",
                      "dropout 0"),
              Variant("dropout", ALEXNET_BASE, "alexnet-base", "dropout 0.5 (paper)")),
    files=ALEXNET_FILES,
    minutes=20,
    summarise=partial(summaries.dropout, train="metrics/train/alexnet.json", history="plots/train/alexnet.csv",
                      evaluate="metrics/evaluate/alexnet.json", target=0.6, without="no-dropout", with_="dropout"),
))

register(Claim(
    name="lrn-pooling",
    title="Local response normalisation and overlapping pooling",
    text="Local response normalisation and overlapping max pooling each lower AlexNet's error a little.",
    source="AlexNet (Krizhevsky et al. 2012, sections 3.3 and 3.4): LRN -1.4% top-1 and -1.2% top-5; "
           "overlapping pooling (3x3, stride 2 against 2x2, stride 2) -0.4% top-1 and -0.3% top-5.",
    method=f"AlexNet on Imagenette (quick profile), {ALEXNET_EPOCHS} epochs, removing one component at a time; "
           f"errors on the evaluation split (500 ILSVRC2012 validation images of the 10 classes) with 1 and 10 "
           f"crops. The base variant is shared with the dropout claim.",
    seed_keys=("train.alexnet.seed",),
    targets=("evaluate@alexnet",),
    overrides={"train.alexnet.epochs": ALEXNET_EPOCHS},
    variants=(Variant("base", ALEXNET_BASE, "alexnet-base", "LRN and overlapping pooling (paper)"),
              Variant("no-lrn", {**ALEXNET_BASE, "train.alexnet.lrn": False}, "alexnet-nolrn", "without LRN"),
              Variant("no-overlap", {**ALEXNET_BASE, "train.alexnet.overlapping_pool": False}, "alexnet-nooverlap",
                      "2x2 pooling, stride 2")),
    files=ALEXNET_FILES,
    minutes=30,
    summarise=partial(summaries.ablation, evaluate="metrics/evaluate/alexnet.json", base="base",
                      ablated=("no-lrn", "no-overlap"),
                      paper={"no-lrn": "+1.4 top-1, +1.2 top-5", "no-overlap": "+0.4 top-1, +0.3 top-5"}),
))

DEEPFACE = {"train.deepface.variant": "full", "train.deepface.identities": 0, "train.deepface.images_fraction": 1.0}

register(Claim(
    name="deepface-scale",
    title="DeepFace: more identities, fewer images, fewer layers",
    text="DeepFace's classification error rises slowly with the number of training identities, fast when each "
         "identity has fewer images, and when locally connected or convolutional layers are removed.",
    source="DeepFace (Taigman et al. 2014, section 5.1, Table 1 left to right): DF-1.5K/3.3K/4.4K 7.0/7.2/8.7%; "
           "DF-10%/20%/50% 20.7/15.1/10.9%; DF-sub1/sub2/sub3 11.2/12.6/13.5%, on held-out SFC images.",
    method="DeepFace on the 40 ORL identities (quick profile: 76 px, width 0.25, 40 epochs). Identities scale "
           "as the paper's 1.5K/3.3K/4.4K of 4,030 people: 14, 30 and all 40. Images per identity: 10%, 20% and "
           "50% of each identity's training images. Depth: sub1 without C3, sub2 without L4 and L5, sub3 without "
           "all three. The error is the training stage's best validation error: held-out images of the training "
           "identities, the paper's SFC test protocol. That held-out set is 5% of ORL's 400 images, 20 images "
           "for all 40 identities and fewer for the subsets, so one image moves the error by 5 points or more. "
           "Epochs stay at 40, so a smaller training set also gets fewer SGD steps.",
    seed_keys=("train.deepface.seed",),
    targets=("train@deepface",),
    variants=(
        Variant("full", DEEPFACE, "deepface-full", "DF-full (40 identities, all images)"),
        Variant("ids14", {**DEEPFACE, "train.deepface.identities": 14}, "deepface-ids14", "14 identities (1.5K)"),
        Variant("ids30", {**DEEPFACE, "train.deepface.identities": 30}, "deepface-ids30", "30 identities (3.3K)"),
        Variant("frac50", {**DEEPFACE, "train.deepface.images_fraction": 0.5}, "deepface-frac50", "50% images"),
        Variant("frac20", {**DEEPFACE, "train.deepface.images_fraction": 0.2}, "deepface-frac20", "20% images"),
        Variant("frac10", {**DEEPFACE, "train.deepface.images_fraction": 0.1}, "deepface-frac10", "10% images"),
        Variant("sub1", {**DEEPFACE, "train.deepface.variant": "sub1"}, "deepface-sub1", "sub1 (no C3)"),
        Variant("sub2", {**DEEPFACE, "train.deepface.variant": "sub2"}, "deepface-sub2", "sub2 (no L4, L5)"),
        Variant("sub3", {**DEEPFACE, "train.deepface.variant": "sub3"}, "deepface-sub3", "sub3 (no C3, L4, L5)"),
    ),
    files=("metrics/train/deepface.json", "plots/train/deepface.csv"),
    minutes=55,
    summarise=partial(
        summaries.deepface, train="metrics/train/deepface.json",
        groups={"identities": ("ids14", "ids30", "full"), "images per identity": ("full", "frac50", "frac20", "frac10"),
                "depth": ("full", "sub1", "sub2", "sub3")},
        paper={"ids14": 0.0700, "ids30": 0.0722, "full": 0.0874, "frac50": 0.109, "frac20": 0.151, "frac10": 0.207,
               "sub1": 0.112, "sub2": 0.126, "sub3": 0.135}),
))

register(Claim(
    name="aux-heads",
    title="GoogLeNet's auxiliary classifiers",
    text="GoogLeNet's two auxiliary classifiers change its error only a little.",
    source="GoogLeNet (Szegedy et al. 2015, section 5): the auxiliary networks' effect is relatively minor, "
           "around 0.5%.",
    method=f"GoogLeNet member 1 on Imagenette (quick profile: 112 px, width 0.25, batch norm), {GOOGLENET_EPOCHS} "
           f"epochs instead of 10, with and without the auxiliary heads; errors on the evaluation split with "
           f"1 and 10 crops.",
    seed_keys=("train.googlenet.seed",),
    targets=("evaluate@googlenet-1",),
    overrides={"train.googlenet.epochs": GOOGLENET_EPOCHS},
    variants=(Variant("aux", {"train.googlenet.aux_heads": True}, label="with auxiliary heads (paper)"),
              Variant("no-aux", {"train.googlenet.aux_heads": False}, label="without auxiliary heads")),
    files=("metrics/train/googlenet-1.json", "metrics/evaluate/googlenet-1.json"),
    minutes=25,
    summarise=partial(summaries.ablation, evaluate="metrics/evaluate/googlenet-1.json", base="aux",
                      ablated=("no-aux",), paper={"no-aux": "about 0.5%"}, small=0.01),
))

register(Claim(
    name="crops-models",
    title="GoogLeNet: more crops and more models",
    text="Averaging more crops per image and more independently trained models lowers the top-5 error, with "
         "diminishing returns.",
    source="GoogLeNet (Szegedy et al. 2015, Table 3): 1 model 1 crop 10.07%, 1 model 10 crops 9.15%, 7 models "
           "1 crop 8.09%, 7 models 10 crops 7.62% top-5.",
    method=f"The ensemble stage's models x crops grid after training all {GOOGLENET_MEMBERS} members for "
           f"{GOOGLENET_EPOCHS} epochs instead of 10 (quick profile otherwise), 1 and 10 crops. The seed is "
           f"train.googlenet.seed: it sets the members' shared initial weights and, plus the member number, each "
           f"member's data order. Training 7 members took about 40 minutes here, so the default is one seed: the "
           f"1-model rows then spread over the 7 members, and the 7-model rows have one value per seed "
           f"(run with --seeds 0 1 for a spread).",
    seeds=(0,),
    seed_keys=("train.googlenet.seed",),
    targets=("ensemble@googlenet",),
    overrides={"train.googlenet.epochs": GOOGLENET_EPOCHS},
    variants=(Variant("ensemble", {}, label=f"{GOOGLENET_MEMBERS} members"),),
    files=("metrics/ensemble/googlenet.json",
           *(f"metrics/evaluate/googlenet-{k}.json" for k in range(1, GOOGLENET_MEMBERS + 1))),
    minutes=40,
    summarise=partial(summaries.crops_models, members=GOOGLENET_MEMBERS, crops=(1, 10),
                      paper={(1, 1): 0.1007, (1, 10): 0.0915, (7, 1): 0.0809, (7, 10): 0.0762}),
))
