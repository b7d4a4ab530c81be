"""Claims measured without training: weight sharing (parameter counts) and the speed of convolutions.

Both build real torch layers and count or time them. Neither needs a DVC experiment, but both run through the
same `cnnrepro claims run NAME` command and write the same kind of summary.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnrepro.claims import stats
from cnnrepro.claims.stats import fmt, fmt_spread


class LocallyConnected1d(nn.Module):
    """A 1-D layer with one unshared filter of `kernel_size` taps per output position, zero-padded at the edges."""

    def __init__(self, length: int, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.randn(length, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.kernel_size // 2
        patches = nn.functional.pad(x, (pad, pad)).unfold(-1, self.kernel_size, 1)  # N x length x kernel_size
        return (patches * self.weight).sum(-1)


def one_d_layers(width: int = 5, kernel_size: int = 3) -> dict[str, nn.Module]:
    """Build the chapter's 1-D example: `width` inputs to `width` outputs, fully connected, locally connected and convolution."""
    conv = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)
    return {
        "fully connected": nn.Linear(width, width, bias=False),
        "locally connected": LocallyConnected1d(width, kernel_size),
        "convolution": _Flat(conv),
    }


class _Flat(nn.Module):
    """Run a one-channel Conv1d on N x length input."""

    def __init__(self, conv: nn.Conv1d):
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.unsqueeze(1)).squeeze(1)


def count_layer(layer: nn.Module, width: int, seed: int = 0) -> dict[str, int]:
    """Count a layer's stored parameters, the weights that touch a real input, and its input-output connections.

    Connections are the nonzero entries of the Jacobian of the outputs with respect to the inputs. Weights that
    touch a real input are the parameters with a nonzero gradient for a random input, so taps that only ever
    multiply the zero padding do not count.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.copy_(torch.rand(parameter.shape, generator=generator) + 0.5)  # nonzero everywhere
    x = torch.rand(1, width, generator=generator) + 0.5
    jacobian = torch.autograd.functional.jacobian(lambda v: layer(v), x).reshape(width, width)
    layer.zero_grad()
    layer(x).sum().backward()
    used = sum(int((p.grad != 0).sum()) for p in layer.parameters())
    return {
        "parameters": sum(p.numel() for p in layer.parameters()),
        "weights": used,
        "connections": int((jacobian != 0).sum()),
    }


def weight_sharing(root: Path, claim, seeds) -> dict[str, Any]:
    """Count the 1-D example's three layers, and LeNet-5's layers with `cnnrepro describe`."""
    from cnnrepro.models import build, describe

    torch.manual_seed(seeds[0])
    width, kernel = 5, 3
    counts = {name: count_layer(layer, width, seeds[0]) for name, layer in one_d_layers(width, kernel).items()}
    lenet = build("lenet5", num_classes=10)
    rows = describe.table(lenet, (1, lenet.input_channels, lenet.input_size, lenet.input_size))
    lenet_rows = [[r["layer"], r["type"], f"{r['params']:,}", f"{r['connections']:,}",
                   f"{r['connections'] / r['params']:.1f}" if r["params"] else "-"] for r in rows]
    fc, lc, conv = (counts[k] for k in ("fully connected", "locally connected", "convolution"))
    checks = {
        "the fully connected layer has one weight per connection": fc["weights"] == fc["connections"],
        "the locally connected layer has fewer weights than the fully connected one": lc["weights"] < fc["weights"],
        "the convolution has fewer weights than the locally connected one": conv["weights"] < lc["weights"],
        "the locally connected layer and the convolution have the same connections": lc["connections"] == conv["connections"],
        "the counts are the chapter's 25 / 13 / 3": (fc["weights"], lc["weights"], conv["weights"]) == (25, 13, 3),
    }
    findings = [
        f"{name}: {c['weights']} weights touch a real input ({c['parameters']} stored), {c['connections']} connections."
        for name, c in counts.items()
    ]
    shared = [f"{r['layer']} {r['connections'] / r['params']:.0f}" for r in rows if r["params"] and r["connections"] > r["params"]]
    once = [r["layer"] for r in rows if r["params"] and r["connections"] <= r["params"]]
    findings.append(f"LeNet-5 connections per parameter: {', '.join(shared)}; one or fewer in {', '.join(once)}.")
    findings += [f"{'yes' if ok else 'no'}: {text}" for text, ok in checks.items()]
    passed = sum(checks.values())
    return {
        "values": counts,
        "table": {"columns": ["layer (5 inputs, 5 outputs)", "weights on real inputs", "stored parameters",
                              "connections"],
                  "rows": [[name, str(c["weights"]), str(c["parameters"]), str(c["connections"])]
                           for name, c in counts.items()]},
        "extra_tables": [{"caption": "LeNet-5 per layer (cnnrepro describe lenet5)",
                          "columns": ["layer", "type", "parameters", "connections", "connections per parameter"],
                          "rows": lenet_rows}],
        "findings": findings,
        "rule": "held: all five checks listed pass; partly: some; did not hold: none",
        "verdict": stats.verdict(passed == len(checks), passed > 0),
    }


# -- convolution speed -----------------------------------------------------------------------------------------

CONV_TYPES = ("Conv2d", "PartialConv2d")


def matched_mlp(params: int, inputs: int = 32 * 32, classes: int = 10) -> nn.Module:
    """Return a one-hidden-layer ReLU MLP whose parameter count is closest to `params`."""
    hidden = max(1, round((params - classes) / (inputs + 1 + classes)))
    return nn.Sequential(nn.Flatten(), nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, classes))


def _time_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int) -> float:
    """Return the fastest of `repeats` forward and backward passes with the model's training loss, in seconds.

    The minimum is the usual micro-benchmark statistic: other processes on the machine only ever add time.
    """
    from cnnrepro.training.loop import loss_of

    timings = []
    for i in range(repeats + 1):
        model.zero_grad()
        started = time.perf_counter()
        loss_of(model, model(x), y).backward()
        if i:  # the first pass allocates buffers and is left out
            timings.append(time.perf_counter() - started)
    return min(timings)


def mnist_batch(root: Path, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return `size` MNIST test images padded to 32x32 and scaled to [-0.1, 1.175] as LeNet-5 expects, and labels."""
    from cnnrepro.data import mnist

    images, labels = mnist.load(root / "data" / "raw" / "mnist", "test")
    chosen = np.random.default_rng(seed).choice(len(images), size, replace=False)
    x = torch.from_numpy(images[chosen]).float().div(255.0).mul(1.275).sub(0.1)
    x = nn.functional.pad(x, (2, 2, 2, 2), value=-0.1).unsqueeze(1)
    return x, torch.from_numpy(labels[chosen]).long()


def conv_speed(root: Path, claim, seeds, batch: int = 256, repeats: int = 20) -> dict[str, Any]:
    """Measure LeNet-5's share of forward time in convolutions, and its step time against a matched MLP."""
    from cnnrepro.models import build, describe

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core: the ratio then does not depend on how busy the other core is
    try:
        shares, ratios, times = {}, {}, {}
        for seed in seeds:
            torch.manual_seed(seed)
            lenet = build("lenet5", num_classes=10)
            x, y = mnist_batch(root, batch, seed)
            rows = describe.table(lenet, tuple(x.shape), repeats=repeats)
            shares[seed] = sum(r["time_share"] for r in rows if any(t in r["type"] for t in CONV_TYPES))
            lenet_params = sum(p.numel() for p in lenet.parameters() if p.requires_grad)
            mlp = matched_mlp(lenet_params)
            lenet.train()
            cnn_s, mlp_s = _time_step(lenet, x, y, repeats), _time_step(mlp, x, y, repeats)
            ratios[seed] = cnn_s / mlp_s
            times[seed] = (cnn_s, mlp_s)
    finally:
        torch.set_num_threads(threads)
    mlp_params = sum(p.numel() for p in mlp.parameters())
    share, ratio = stats.spread(shares), stats.spread(ratios)
    cnn_ms = stats.spread({s: t[0] * 1e3 for s, t in times.items()})
    mlp_ms = stats.spread({s: t[1] * 1e3 for s, t in times.items()})
    conv_dominates, slower = share["mean"] > 0.5, ratio["mean"] > 1.0
    return {
        "values": {"conv_time_share": share, "cnn_over_mlp": ratio, "cnn_step_ms": cnn_ms, "mlp_step_ms": mlp_ms,
                   "lenet5_parameters": lenet_params, "mlp_parameters": mlp_params, "batch": batch},
        "table": {"columns": ["measure", "value (mean ± std over seeds)"],
                  "rows": [["share of LeNet-5 forward time in C1, C3, C5", fmt_spread(share, "%", 1)],
                           [f"LeNet-5 forward+backward, batch {batch} ({lenet_params:,} parameters)", fmt_spread(cnn_ms, " ms")],
                           [f"MLP 1024-{mlp[1].out_features}-10 forward+backward ({mlp_params:,} parameters)", fmt_spread(mlp_ms, " ms")],
                           ["LeNet-5 time / MLP time", fmt_spread(ratio, "x")]]},
        "findings": [
            f"Convolutions take {fmt(share['mean'], '%', 1)} of LeNet-5's forward time.",
            f"A training step of LeNet-5 takes {fmt(ratio['mean'], 'x', 1)} the time of an MLP with "
            f"{mlp_params:,} parameters against LeNet-5's {lenet_params:,}, on the same batch of {batch} MNIST images.",
        ],
        "rule": "held: convolutions take more than half of the forward time AND LeNet-5's step is slower than the "
                "matched MLP's; partly: one of the two; did not hold: neither",
        "verdict": stats.verdict(conv_dominates and slower, conv_dominates or slower),
    }
