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


def images_per_second(model, loss_fn, batch: int, size: int, steps: int, device, channels_last: bool) -> float:
    """Return the best images/s over `steps` timed training steps, after one warm-up step."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=memory_format)
    y = torch.randint(0, 1000, (batch,), device=device)
    best = float("inf")
    for step in range(steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step > 0:
            best = min(best, time.perf_counter() - start)
    return batch / best


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

    def run(label: str, make_model, loss_fn, size: int) -> float:
        torch.manual_seed(0)
        rate = images_per_second(make_model(), loss_fn, args.batch, size, args.steps, device, channels_last)
        print(f"{label:44} {rate:9.1f} images/s")
        return rate

    print(f"batch {args.batch}, device {device}, threads {args.threads}, channels_last {channels_last}")

    def ours_loss(model):
        return lambda outputs, target: model.loss(outputs, target)

    reference = run(
        "torchvision googlenet (aux, BN)",
        lambda: torchvision.models.googlenet(aux_logits=True, init_weights=True),
        torchvision_loss,
        args.googlenet_size,
    )
    for label, options in (("ours googlenet (aux, paper: LRN)", {}), ("ours googlenet (aux, batch_norm)", {"batch_norm": True})):
        model = build("googlenet", num_classes=1000, image_size=args.googlenet_size, **options)
        rate = run(label, lambda model=model: model, ours_loss(model), args.googlenet_size)
        print(f"{'  ratio ours / torchvision':44} {rate / reference:9.2f}")

    reference = run("torchvision alexnet", lambda: torchvision.models.alexnet(), torchvision_loss, args.alexnet_size)
    model = build("alexnet", num_classes=1000, image_size=args.alexnet_size)
    rate = run("ours alexnet (two towers, LRN)", lambda: model, ours_loss(model), args.alexnet_size)
    print(f"{'  ratio ours / torchvision':44} {rate / reference:9.2f}")


if __name__ == "__main__":
    main()
