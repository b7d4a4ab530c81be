"""`cnnrepro describe MODEL`: a model's anatomy, one row per top-level layer.

Each row gives the output shape, the trainable parameters, the connections, the multiply-adds and the
share of forward time. Connections follow LeNet-5's paper: one per input-to-output link, plus one per bias
(which is how it arrives at 340,908). Multiply-adds are the connections without the biases, the count
GoogLeNet's paper calls "ops". Layers without weights (pooling, normalisation, activations) count none.
The model runs in eval mode, so GoogLeNet's auxiliary heads are left out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict

import torch
from torch import nn

__all__ = ["table", "totals", "main"]


def connections(module: nn.Module, output: torch.Tensor) -> int:
    """Return the connections per sample of one leaf module's forward (0 for layers without weights)."""
    if hasattr(module, "connections"):
        return int(module.connections(output))
    if isinstance(module, nn.Conv2d):
        fan_in = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        return output[0].numel() * (fan_in + (module.bias is not None))
    if isinstance(module, nn.Linear):
        return output[0].numel() * (module.in_features + (module.bias is not None))
    return 0


def _bias_links(module: nn.Module, output: torch.Tensor) -> int:
    """Return the connections that are biases: one per output unit of a layer with a bias."""
    if getattr(module, "bias", None) is None or not isinstance(module.bias, torch.Tensor):
        return 0
    return output[0].numel()


def _type_name(module: nn.Module) -> str:
    """Return the class name, or the layer classes joined by '+' for an nn.Sequential."""
    if isinstance(module, nn.Sequential):
        return "+".join(type(layer).__name__ for layer in module)
    return type(module).__name__


def table(model: nn.Module, input_shape: tuple[int, ...], repeats: int = 1) -> list[dict]:
    """Run `model` on zeros of `input_shape` and return one row per top-level child that ran.

    Rows have keys layer, type, output_shape (without the batch dimension), params, connections, macs,
    time_ms (the mean over `repeats` forward passes) and time_share (of the rows' summed time).
    Counts are per sample. The model runs in eval mode and gets its previous mode back afterwards.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    was_training = model.training
    model.eval()
    owner = {}
    for name, child in model.named_children():
        for module in child.modules():
            owner[module] = name

    links: dict[str, int] = defaultdict(int)
    macs: dict[str, int] = defaultdict(int)
    shapes: dict[str, list[int]] = {}
    elapsed: dict[str, float] = defaultdict(float)
    started: dict[str, float] = {}
    handles = []

    def count(module, inputs, output):
        if counting and isinstance(output, torch.Tensor):
            total = connections(module, output)
            links[owner[module]] += total
            macs[owner[module]] += total - (_bias_links(module, output) if total else 0)

    def start(name):
        return lambda module, inputs: started.__setitem__(name, time.perf_counter())

    def stop(name):
        def hook(module, inputs, output):
            elapsed[name] += time.perf_counter() - started[name]
            shapes[name] = list(output.shape[1:])

        return hook

    for module in owner:
        if not list(module.children()):
            handles.append(module.register_forward_hook(count))
    for name, child in model.named_children():
        handles.append(child.register_forward_pre_hook(start(name)))
        handles.append(child.register_forward_hook(stop(name)))

    x = torch.zeros(input_shape, device=next(model.parameters()).device)
    try:
        with torch.no_grad():
            counting = True
            model(x)
            counting = False
            elapsed.clear()
            for _ in range(repeats):
                model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    total_time = sum(elapsed.values()) or 1.0
    rows = []
    for name, child in model.named_children():
        if name not in shapes:
            continue
        rows.append(
            {
                "layer": name,
                "type": _type_name(child),
                "output_shape": shapes[name],
                "params": sum(p.numel() for p in child.parameters() if p.requires_grad),
                "connections": links[name],
                "macs": macs[name],
                "time_ms": elapsed[name] / repeats * 1e3,
                "time_share": elapsed[name] / total_time,
            }
        )
    return rows


def totals(rows: list[dict]) -> dict:
    """Sum the per-layer counts and times of `table`'s rows."""
    keys = ("params", "connections", "macs", "time_ms", "time_share")
    return {key: sum(row[key] for row in rows) for key in keys}


def format_table(rows: list[dict]) -> str:
    header = f"{'layer':16} {'type':28} {'output':>16} {'params':>12} {'connections':>15} {'macs':>15} {'time':>7}"
    lines = [header, "-" * len(header)]
    for row in [*rows, {"layer": "total", "type": "", "output_shape": [], **totals(rows)}]:
        shape = "x".join(str(size) for size in row["output_shape"])
        lines.append(
            f"{row['layer']:16} {row['type']:28} {shape:>16} {row['params']:>12,} {row['connections']:>15,} "
            f"{row['macs']:>15,} {row['time_share']:>6.1%}"
        )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Build the model named by `args.model` and print its table (or JSON with `args.json`)."""
    from cnnrepro.models import DEFAULT_NUM_CLASSES, FAMILIES, build

    if args.model not in FAMILIES:
        print(f"cnnrepro describe: unknown model {args.model!r}; expected one of {', '.join(FAMILIES)}", file=sys.stderr)
        return 2
    if args.repeats < 1:
        print(f"cnnrepro describe: --repeats must be at least 1, got {args.repeats}", file=sys.stderr)
        return 2
    # --variant is a DeepFace option. build rejects it for other families and lists the options they accept.
    variant = getattr(args, "variant", None)
    extra = {} if variant is None else {"variant": variant}
    try:
        model = build(args.model, num_classes=DEFAULT_NUM_CLASSES[args.model], image_size=args.image_size,
                      width=args.width, **extra)
    except ValueError as err:
        print(f"cnnrepro describe: {err}", file=sys.stderr)
        return 2
    input_shape = (1, model.input_channels, model.input_size, model.input_size)
    rows = table(model, input_shape, repeats=args.repeats)
    if args.json:
        report = {
            "model": args.model,
            **extra,
            "input_shape": list(input_shape),
            "layers": rows,
            "totals": totals(rows),
        }
        print(json.dumps(report, indent=2))
    else:
        name = args.model if variant is None else f"{args.model} {variant}"
        print(f"{name}, input {'x'.join(map(str, input_shape[1:]))}, counts per image")
        print(format_table(rows))
    return 0
