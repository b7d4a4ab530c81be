"""Training throughput (images/s) of our GoogLeNet and AlexNet against torchvision's models.

Run from the repository root:

    PYTHONPATH=src python benchmarks/train_step.py [--batch 16] [--steps 3] [--threads 2] [--device cpu]

Each step is forward, loss, backward and an SGD update on random images, with both models at the same
batch, input size and memory format. GoogLeNet runs with auxiliary heads on both sides
(`torchvision.models.googlenet(aux_logits=True, init_weights=True)`, whose loss here is main + 0.3 * aux, as
ours). torchvision's GoogLeNet has batch normalisation, so ours is measured both as in the paper and with
`batch_norm=True`. AlexNet is compared with `torchvision.models.alexnet()` (one tower, 64-192-384-256-256
filters, no LRN) at 227x227. The printed ratio is ours / torchvision; above 1.0 means ours is faster.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
import torchvision

from cnnrepro.models import build


def torchvision_loss(outputs, target: torch.Tensor) -> torch.Tensor:
    if isinstance(outputs, tuple):  # torchvision's GoogLeNetOutputs(logits, aux_logits2, aux_logits1)
        main, aux2, aux1 = outputs
        return F.cross_entropy(main, target) + 0.3 * (F.cross_entropy(aux1, target) + F.cross_entropy(aux2, target))
    return F.cross_entropy(outputs, target)


class Trainer:
    """One model, its optimizer and a fixed random batch; `step()` times one training step."""

    def __init__(self, model, loss_fn, batch: int, size: int, device, channels_last: bool):
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(device, memory_format=memory_format).train()
        self.loss_fn = loss_fn
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9)
        self.x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=memory_format)
        self.y = torch.randint(0, 1000, (batch,), device=device)
        self.device = device

    def step(self) -> float:
        """Run one forward, backward and SGD update; return its wall time in seconds."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        self.loss_fn(self.model(self.x), self.y).backward()
        self.optimizer.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - start


def images_per_second(trainers: dict[str, Trainer], batch: int, steps: int) -> dict[str, float]:
    """Return each trainer's best images/s over `steps` timed steps, after one warm-up step each.

    The trainers take turns step by step, so a change in the machine's load affects all of them alike.
    """
    best = {label: float("inf") for label in trainers}
    for step in range(steps + 1):
        for label, trainer in trainers.items():
            seconds = trainer.step()
            if step > 0:
                best[label] = min(best[label], seconds)
    return {label: batch / seconds for label, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16, help="images per step")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model; the fastest is reported")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="torch device, such as cpu or cuda")
    parser.add_argument("--googlenet-size", type=int, default=224, help="GoogLeNet input side in pixels")
    parser.add_argument("--alexnet-size", type=int, default=227, help="AlexNet input side in pixels")
    parser.add_argument("--no-channels-last", action="store_true", help="keep NCHW tensors")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    channels_last = not args.no_channels_last

    print(f"batch {args.batch}, device {device}, threads {args.threads}, channels_last {channels_last}")

    def trainer(model, loss_fn, size: int) -> Trainer:
        return Trainer(model, loss_fn, args.batch, size, device, channels_last)

    def ours(family: str, size: int, **options) -> Trainer:
        torch.manual_seed(0)
        model = build(family, num_classes=1000, image_size=size, **options)
        return trainer(model, model.loss, size)

    size = args.googlenet_size
    torch.manual_seed(0)
    googlenets = {
        "torchvision googlenet (aux, BN)": trainer(
            torchvision.models.googlenet(aux_logits=True, init_weights=True), torchvision_loss, size
        ),
        "ours googlenet (aux, paper: LRN)": ours("googlenet", size),
        "ours googlenet (aux, batch_norm)": ours("googlenet", size, batch_norm=True),
    }
    report(images_per_second(googlenets, args.batch, args.steps))
    del googlenets

    size = args.alexnet_size
    torch.manual_seed(0)
    alexnets = {
        "torchvision alexnet": trainer(torchvision.models.alexnet(), torchvision_loss, size),
        "ours alexnet (two towers, LRN)": ours("alexnet", size),
    }
    report(images_per_second(alexnets, args.batch, args.steps))


def report(rates: dict[str, float]) -> None:
    """Print each model's images/s and, for ours, the ratio to the torchvision model listed first."""
    reference = next(iter(rates.values()))
    for label, rate in rates.items():
        ratio = f"ratio ours / torchvision {rate / reference:.2f}" if label.startswith("ours") else ""
        print(f"{label:36} {rate:8.1f} images/s  {ratio}")


if __name__ == "__main__":
    main()
