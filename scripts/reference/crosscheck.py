#!/usr/bin/env python3
"""Writes Tests/BNNTests/Fixtures/reference-step-*.json: one training step of ResNet-20 (1W1A and 1W32A) computed by
the paper's public PyTorch code, for the test that checks the Swift training graph against it number for number.

usage: crosscheck.py REFERENCE_CODE_DIR [OUT_DIR]
  REFERENCE_CODE_DIR  a checkout of the paper's code (main.py, model/, utils/); needs torch and numpy.

Every parameter starts from a closed-form pattern that both sides compute exactly (no random generator to
match); the batch is the first IMAGES records of the bundled sample, normalised without augmentation. The
fixture holds the loss, the logits, and per parameter a digest (sum, sum of squares, a few elements) of its
gradient and of its value after one SGD step (lr 0.1, momentum 0.9, weight decay 1e-4), plus the running
statistics of every batch norm after the step.

One deliberate difference: the reference simulates a binary convolution in float, so an output whose integer
dot product is 0 comes out as rounding noise of either sign (±1e-7) instead of 0, and the ReLU after it lets
the gradient through or not by chance. The library computes α × the integer exactly. To compare the rest
number for number, a forward hook here snaps each binary convolution's output to α × round(output / α) (the
value is then exact; the gradient passes through the hook unchanged).
"""
import json, os, sys

import numpy as np

code = sys.argv[1]
out_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "../../Tests/BNNTests/Fixtures")
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../..")
IMAGES = 32
SAMPLES = (0, 1, 2, 3, 5, 8, 13, 21)


def pattern(index, count):
    """Values in [-1, 1): ((i·7919 + index·104729) mod 2003) / 1001.5 − 1, exact in float64 and float32."""
    i = np.arange(count, dtype=np.int64)
    return ((i * 7919 + index * 104729) % 2003).astype(np.float64) / 1001.5 - 1.0


def initial_value(index, name, shape):
    v = pattern(index, int(np.prod(shape)))
    if name.endswith("bn1.weight") or name.endswith("bn2.weight") or (".bn" in name and name.endswith("weight")):
        v = 1.0 + 0.1 * v
    elif name.endswith("bias"):
        v = 0.1 * v
    else:  # conv and linear weights: about Kaiming's scale
        fan_in = int(np.prod(shape[1:]))
        v = v * np.sqrt(6.0 / fan_in)
    return v.astype(np.float32).reshape(shape)


def digest(a):
    a = np.asarray(a, dtype=np.float64).ravel()
    return {"sum": float(a.sum()), "sum_squares": float((a * a).sum()),
            "samples": [float(a[i]) for i in SAMPLES if i < a.size]}


def run(variant, estimator, o):
    sys.argv = ["main.py", "--estimator", estimator] + (["--a32"] if variant == "1w32a" else [])
    for name in list(sys.modules):
        if name == "model" or name.startswith("model.") or name.startswith("utils"):
            del sys.modules[name]
    import torch, torch.nn as nn
    torch.set_num_threads(1)
    from model import models_cifar
    from model.binary_module import binarized_modules as bm

    class FixedSTE(torch.autograd.Function):
        # The published STE backward unpacks its saved tensors wrongly; the same rule with a working unpacking.
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return torch.sign(x)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * (x.abs() <= 1).to(g.dtype)

    bm.Binary = FixedSTE
    model = models_cifar.resnet20_1w1a(num_classes=10)
    names = sorted(n for n, _ in model.named_parameters())
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(torch.from_numpy(initial_value(names.index(n), n, tuple(p.shape))))
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.o = torch.tensor(float(o))
            m.o_a = torch.tensor(float(o))

    def snap(module, inputs, output):
        alpha = module.weight.abs().mean()
        exact = torch.round(output / alpha) * alpha
        return output + (exact - output).detach()

    if variant == "1w1a":
        for m in model.modules():
            if isinstance(m, bm.BinarizeConv2d):
                m.register_forward_hook(snap)

    raw = np.fromfile(os.path.join(root, "Examples/data/cifar10-sample/data_batch_1.bin"), dtype=np.uint8)
    raw = raw.reshape(-1, 3073)[:IMAGES]
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 3, 1, 1)
    x = torch.from_numpy(((raw[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / np.float32(255)) - mean) / std)
    y = torch.from_numpy(raw[:, 0].astype(np.int64))

    optimizer = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9, weight_decay=1e-4)
    model.train()
    logits = model(x)
    loss = nn.CrossEntropyLoss()(logits, y)
    optimizer.zero_grad()
    loss.backward()
    gradients = {n: digest(p.grad.numpy()) for n, p in model.named_parameters()}
    optimizer.step()
    return {
        "variant": variant, "estimator": estimator.lower(), "o": o, "images": IMAGES,
        "learning_rate": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "samples": list(SAMPLES),
        "loss": float(loss.item()), "logits": [float(v) for v in logits.detach().numpy().ravel()],
        "gradients": gradients,
        "parameters_after_step": {n: digest(p.detach().numpy()) for n, p in model.named_parameters()},
        "buffers_after_step": {n: digest(b.numpy()) for n, b in model.named_buffers() if b.dtype == torch.float32},
    }


sys.path.insert(0, os.path.abspath(code))
os.makedirs(out_dir, exist_ok=True)
for variant, estimator, o in [("1w1a", "ReSTE", 2.0), ("1w1a", "STE", 1.0), ("1w32a", "ReSTE", 3.0)]:
    result = run(variant, estimator, o)
    path = os.path.join(out_dir, f"reference-step-{variant}-{estimator.lower()}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(f"{path}: loss {result['loss']:.6f}")
