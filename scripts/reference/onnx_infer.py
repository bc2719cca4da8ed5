#!/usr/bin/env python3
"""Times ONNX Runtime (CPU, fp32) on the full-precision twin of a registered network: the peer of `bnn bench infer`.

usage: onnx_infer.py MODEL [--threads N] [--batch-sizes 1 64] [--samples 7] [--json]
  MODEL  resnet20, resnet20-bireal, resnet18 or vgg-small (CIFAR-10, 32×32 inputs, 10 classes), or
         resnet18-imagenet or resnet34-imagenet (224×224 inputs, 1,000 classes)
Needs torch (to build and export the network), onnx and onnxruntime.

The twin has the topology of swift-bnn's network with every convolution real-valued (conv → ReLU → batch norm, the
binary network's order; option-A shortcuts for the ResNet-20s, 1×1 downsample shortcuts for ResNet-18), in eval
mode with random weights (speed does not depend on the values). It is exported once to ONNX and run with
`intra_op_num_threads` = N. Each row: warm-up runs, then the median of --samples samples of enough runs to last
about 50 ms each, as `bnn bench infer` measures.
"""
import argparse, json, os, sys, tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import onnxruntime as ort

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "peers"))
from timing import median_seconds  # noqa: E402


class Block(nn.Module):
    """Two 3×3 convolutions, each followed by ReLU then batch norm, and a shortcut (ResNet-20, Bi-Real, ResNet-18)."""

    def __init__(self, cin, cout, stride, shortcut, bireal):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.bireal = bireal
        self.kind = "identity" if stride == 1 and cin == cout else shortcut
        self.pad = (cout - cin) // 2
        if self.kind == "conv":
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def side(self, x):
        if self.kind == "identity":
            return x
        if self.kind == "conv":
            return self.shortcut(x)
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))

    def forward(self, x):
        out = self.bn1(F.relu(self.conv1(x)))
        if self.bireal:
            out = out + self.side(x)
            return self.bn2(F.relu(self.conv2(out))) + out
        return self.bn2(F.relu(self.conv2(out))) + self.side(x)


class ResNet(nn.Module):
    def __init__(self, widths, blocks, shortcut, bireal=False):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        layers, cin = [], widths[0]
        for stage, width in enumerate(widths):
            for index in range(blocks):
                layers.append(Block(cin, width, 2 if stage > 0 and index == 0 else 1, shortcut, bireal))
                cin = width
        self.layers = nn.Sequential(*layers)
        self.bn2 = nn.BatchNorm1d(cin)
        self.linear = nn.Linear(cin, 10)

    def forward(self, x):
        out = self.layers(self.bn1(F.relu(self.conv1(x))))
        return self.linear(self.bn2(F.adaptive_avg_pool2d(out, 1).flatten(1)))


class VGGSmall(nn.Module):
    def __init__(self):
        super().__init__()
        widths = [(3, 128), (128, 128), (128, 256), (256, 256), (256, 512), (512, 512)]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, 1, 1, bias=False) for a, b in widths)
        self.bns = nn.ModuleList(nn.BatchNorm2d(b) for _, b in widths)
        self.fc = nn.Linear(512 * 4 * 4, 10)

    def forward(self, x):
        for index, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            x = bn(F.relu(conv(x)))
            if index % 2 == 1:
                x = F.max_pool2d(x, 2)
        return self.fc(x.flatten(1))


class ImageNetResNet(nn.Module):
    """7×7 stride-2 stem → ReLU → batch norm → 3×3 stride-2 max-pool, Bi-Real blocks with 1×1 downsamples, global
    average pool → batch norm → 1,000 logits (swift-bnn's resnet18-imagenet and resnet34-imagenet)."""

    def __init__(self, blocks):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, cin = [], 64
        for stage, (width, count) in enumerate(zip([64, 128, 256, 512], blocks)):
            for index in range(count):
                layers.append(Block(cin, width, 2 if stage > 0 and index == 0 else 1, "conv", bireal=True))
                cin = width
        self.layers = nn.Sequential(*layers)
        self.bn2 = nn.BatchNorm1d(512)
        self.fc = nn.Linear(512, 1000)

    def forward(self, x):
        out = F.max_pool2d(self.bn1(F.relu(self.conv1(x))), 3, 2, 1)
        return self.fc(self.bn2(F.adaptive_avg_pool2d(self.layers(out), 1).flatten(1)))


NETWORKS = {
    "resnet20": lambda: ResNet([16, 32, 64], 3, "option-a"),
    "resnet20-bireal": lambda: ResNet([16, 32, 64], 3, "option-a", bireal=True),
    "resnet18": lambda: ResNet([64, 128, 256, 512], 2, "conv"),
    "vgg-small": VGGSmall,
    "resnet18-imagenet": lambda: ImageNetResNet([2, 2, 2, 2]),
    "resnet34-imagenet": lambda: ImageNetResNet([3, 4, 6, 3]),
}
SIDE = {"resnet18-imagenet": 224, "resnet34-imagenet": 224}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", choices=sorted(NETWORKS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--samples", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(1)
    model = NETWORKS[args.model]().eval()
    side = SIDE.get(args.model, 32)
    path = os.path.join(tempfile.mkdtemp(), f"{args.model}.onnx")
    torch.onnx.export(model, torch.randn(1, 3, side, side), path, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}}, dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    rows = []
    for batch in args.batch_sizes:
        x = np.random.default_rng(1).standard_normal((batch, 3, side, side)).astype(np.float32)
        seconds = median_seconds(lambda: session.run(None, {"x": x}), args.samples)
        rows.append({"engine": "onnxruntime-fp32", "model": args.model, "batch": batch, "threads": args.threads,
                     "images_per_second": batch / seconds, "ms_per_batch": 1000 * seconds})
    if args.json:
        print(json.dumps(rows))
    else:
        for row in rows:
            print(f"onnxruntime fp32 {args.model} batch {row['batch']:<4} {row['images_per_second']:12.1f} images/s "
                  f"{row['ms_per_batch']:11.4f} ms per batch ({args.threads} threads, ONNX Runtime {ort.__version__})")


if __name__ == "__main__":
    main()
