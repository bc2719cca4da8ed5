#!/usr/bin/env python3
"""Writes Tests/BNNTests/Fixtures/reference-step-*.json: one training step of the CIFAR networks computed by the
paper's public PyTorch code, for the tests that check the Swift models against it number for number.

usage: crosscheck.py REFERENCE_CODE_DIR [OUT_DIR]
  REFERENCE_CODE_DIR  a checkout of the paper's code (main.py, model/, utils/); needs torch, numpy and scipy
                      (the fixtures in the repository were written with torch 2.15.0, numpy 2.4.6 and scipy 1.17.1
                      from PyPI, on CPU, one thread; torch 2.2.2 differs in the last bits of float32 values).

Fixtures
  reference-step-1w1a-reste.json, reference-step-1w1a-ste.json, reference-step-1w32a-reste.json
      ResNet-20 (model/models_cifar/resnet20.py, resnet20_1w1a): 1W1A with ReSTE at o = 2 and with STE, 1W32A
      with ReSTE at o = 3; 32 images; one training step from the closed-form parameters, running statistics at
      PyTorch's defaults (mean 0, variance 1).
  reference-step-resnet20_bireal_1w1a-reste.json   (resnet20_bireal.py, 8 images)
  reference-step-resnet18_1w1a-reste.json          (resnet18.py, 8 images)
  reference-step-vgg_small_1w1a-reste.json         (vgg_small.py, 8 images)
  reference-step-resnet18_imagenet_1w1a-reste.json (models_imagenet/resnet18.py, resnet18_1w1a; 2 images, each
                                                    pixel repeated 2×2 times: 64×64; its AvgPool2d(7), which
                                                    only fits the 7×7 map of a 224×224 image, is replaced by the
                                                    global average it equals there; keys `imagenet`, `upscale`)
      1W1A with ReSTE at o = 2 (t = 1.5 for weights and activations, the published defaults). The model and its
      running statistics start from the closed form below; then (a) one eval-mode forward (model.eval(), under
      no_grad) on the batch gives `eval_logits`, and (b) from the same state (the eval forward changes nothing) one
      training step exactly as for ResNet-20: train mode, cross entropy, backward, SGD. These fixtures also
      record `model` (the authors' function name), `num_classes`, `parameter_count` (sum of numel over
      parameters) and `state_dict`: every state-dict key in state_dict() order with its shape, dtype, whether
      it is a parameter, its initialisation rule and index, and a digest of its initial value; and
      `smallest_sign_input` {eval, train}: the smallest |x| that any binarisation (sign) saw in each pass, how far
      the binary activations are from a tie that float rounding could flip.

Keys of every fixture: variant ("1w1a"/"1w32a"), estimator ("reste"/"ste"), o, images (the batch is the first
`images` records of Examples/data/cifar10-sample/data_batch_1.bin, scaled to [0, 1] and normalised with mean
(0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225) in float32, no augmentation), learning_rate 0.1, momentum 0.9,
weight_decay 1e-4, samples (the element indices a digest keeps), loss, logits (train mode, row-major
[images, 10]), gradients / parameters_after_step / buffers_after_step (name → digest; buffers: every float32
buffer, i.e. running_mean and running_var). A digest is {sum, sum_squares, samples}, in float64 over the tensor
in PyTorch's layout (row-major; convolutions OIHW, linear [out, in]). The new fixtures add: model, num_classes,
parameter_count, state_dict (list of {name, shape, dtype, parameter, rule, index, initial}), eval_logits
(row-major [images, 10]) and smallest_sign_input.

Initialisation (both sides compute it exactly; no random generator to match)
  v(index, i) = ((i·7919 + index·104729) mod 2003) / 1001.5 − 1        for element i (row-major), exact in float64
  Parameters: index = the position of the parameter's name in the sorted list (plain string order) of all
  parameter names of the model. By name and shape:
    rule "bn_weight"  a `weight` with one dimension (the γ of every BatchNorm2d/BatchNorm1d, e.g. `bn1.weight`,
                      `bn0.weight`, `layer2.0.shortcut.1.weight`):                    1 + 0.1·v
    rule "bias"       any `bias` (batch-norm β, the linear layer's bias):             0.1·v
    rule "weight"     any other `weight` (convolution OIHW, linear [out, in]):        v·√(6 / fan_in),
                      fan_in = the product of the shape without its first dimension
  Running statistics (the new fixtures only; ResNet-20's keep PyTorch's 0 and 1): index = P + the position of
  the buffer's name in the sorted list of all `running_mean` and `running_var` names of the model, where P is
  the number of parameters (so no statistic shares its pattern with a parameter):
    rule "running_mean"                                                              0.1·v
    rule "running_var"                                                               1 + 0.5·|v|
  Each value is computed in float64 and then rounded to float32. `num_batches_tracked` stays 0 (rule "none").
  Every convolution gets o = o_a = the fixture's o (t and t_a stay 1.5).

One deliberate difference: the reference simulates a binary convolution in float, so an output whose integer
dot product is 0 comes out as rounding noise of either sign (±1e-7) instead of 0, and the ReLU after it lets
the gradient through or not by chance. The library computes α × the integer exactly. To compare the rest
number for number, a forward hook here snaps each binary convolution's output to α × round(output / α) (the
value is then exact; the gradient passes through the hook unchanged), in the eval forward as well.
The real-valued convolutions (every network's first one, ResNet-18's 1×1 downsample shortcuts) are not snapped.

Notes for a reimplementation: the reference's ReLU passes no gradient at exactly 0 (PyTorch's rule); vgg_small
flattens NCHW (x.view) after its third max-pool, so column c·16 + h·4 + w of fc.weight [10, 8192] takes channel c
at (h, w) of the 4×4 map; resnet18 pools with avg_pool2d(out, 4) and declares `linear` before `bn2` (the order of
its state-dict keys); Bi-Real ResNet-20 adds the shortcut after the first half of each block and the first
half's output after the second.

The published STE backward unpacks its saved tensors wrongly; FixedSTE below is the same rule with a working
unpacking (only the STE fixture uses it).
"""
import json, os, sys

import numpy as np

code = sys.argv[1]
out_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "../../Tests/BNNTests/Fixtures")
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../..")
IMAGES = 32
SAMPLES = (0, 1, 2, 3, 5, 8, 13, 21)
NUM_CLASSES = 10
# The other CIFAR networks of model/models_cifar/: (the authors' function, images per batch).
# 8 images each: quick in a debug build, and no input of a sign lies within float rounding of 0 (with 32 images
# one of Bi-Real ResNet-20's lies 2^-24 from 0 in the training pass, a tie that another summation order can flip).
NETWORKS = [("resnet20_bireal_1w1a", 8), ("resnet18_1w1a", 8), ("vgg_small_1w1a", 8)]
# The ImageNet ResNet-18 of model/models_imagenet/: (the authors' function, images, upscaling). The first 2 sample
# images with each pixel repeated 2×2 times (64×64), 10 classes. At 224×224 a batch holds about fifty times more
# sign inputs, and some come within float rounding of 0 (3e-8 measured), so that another summation order flips
# signs and the comparison says nothing; at 64×64 the smallest is 1.2e-6, as for the CIFAR networks.
IMAGENET_NETWORKS = [("resnet18_1w1a", 2, 2)]


def pattern(index, count):
    """Values in [-1, 1): ((i·7919 + index·104729) mod 2003) / 1001.5 − 1, exact in float64 and float32."""
    i = np.arange(count, dtype=np.int64)
    return ((i * 7919 + index * 104729) % 2003).astype(np.float64) / 1001.5 - 1.0


def parameter_rule(name, shape):
    if name.endswith("weight") and len(shape) == 1:
        return "bn_weight"
    if name.endswith("bias"):
        return "bias"
    return "weight"


def initial_value(index, name, shape):
    v = pattern(index, int(np.prod(shape)))
    rule = parameter_rule(name, shape)
    if rule == "bn_weight":
        v = 1.0 + 0.1 * v
    elif rule == "bias":
        v = 0.1 * v
    else:  # conv and linear weights: about Kaiming's scale
        fan_in = int(np.prod(shape[1:]))
        v = v * np.sqrt(6.0 / fan_in)
    return v.astype(np.float32).reshape(shape)


def initial_statistic(index, name, shape):
    v = pattern(index, int(np.prod(shape)))
    if name.endswith("running_mean"):
        v = 0.1 * v
    elif name.endswith("running_var"):
        v = 1.0 + 0.5 * np.abs(v)
    else:
        raise ValueError(name)
    return v.astype(np.float32).reshape(shape)


def digest(a):
    a = np.asarray(a, dtype=np.float64).ravel()
    return {"sum": float(a.sum()), "sum_squares": float((a * a).sum()),
            "samples": [float(a[i]) for i in SAMPLES if i < a.size]}


def reference(variant, estimator, imagenet=False):
    """Imports the reference afresh with its command-line arguments (utils.arguments parses sys.argv on import)."""
    sys.argv = ["main.py", "--estimator", estimator] + (["--a32"] if variant == "1w32a" else [])
    for name in list(sys.modules):
        if name == "model" or name.startswith("model.") or name.startswith("utils"):
            del sys.modules[name]
    import torch
    torch.set_num_threads(1)
    from model import models_cifar, models_imagenet
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
    return (models_imagenet if imagenet else models_cifar), bm


def batch(count, upscale=1):
    import torch
    raw = np.fromfile(os.path.join(root, "Examples/data/cifar10-sample/data_batch_1.bin"), dtype=np.uint8)
    raw = raw.reshape(-1, 3073)[:count]
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 3, 1, 1)
    x = torch.from_numpy(((raw[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / np.float32(255)) - mean) / std)
    x = x.repeat_interleave(upscale, dim=2).repeat_interleave(upscale, dim=3).contiguous()
    y = torch.from_numpy(raw[:, 0].astype(np.int64))
    return x, y


def build(model_name, variant, estimator, o, statistics, imagenet=False):
    """The reference model from the closed-form start, o set, snapping hooks on (1W1A).

    Returns (model, {name: (rule, index)} for every initialised tensor, the binarized_modules module)."""
    import torch, torch.nn as nn
    import torch.nn as nn
    models, bm = reference(variant, estimator, imagenet)
    model = getattr(models, model_name)(num_classes=NUM_CLASSES)
    if imagenet:
        # AvgPool2d(7) only fits the 7×7 map of a 224×224 image; the global average it computes there takes any
        # size (no parameter changes, the state dict stays the authors').
        model.avgpool = nn.AdaptiveAvgPool2d(1)
    names = sorted(n for n, _ in model.named_parameters())
    statistic_names = sorted(n for n, _ in model.named_buffers() if n.endswith(("running_mean", "running_var")))
    modules = dict(model.named_modules())
    state = {}
    with torch.no_grad():
        for n, p in model.named_parameters():
            shape = tuple(p.shape)
            rule = parameter_rule(n, shape)
            owner = modules[n.rsplit(".", 1)[0]]
            # The rule by name and shape picks out exactly the batch norms' γ.
            assert (rule == "bn_weight") == (isinstance(owner, nn.modules.batchnorm._BatchNorm) and n.endswith("weight")), n
            p.copy_(torch.from_numpy(initial_value(names.index(n), n, shape)))
            state[n] = (rule, names.index(n))
        if statistics:
            for n, b in model.named_buffers():
                if n in statistic_names:
                    index = len(names) + statistic_names.index(n)
                    b.copy_(torch.from_numpy(initial_statistic(index, n, tuple(b.shape))))
                    state[n] = (n.rsplit(".", 1)[1], index)
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
    return model, state, bm


def train_step(model, x, y):
    import torch, torch.nn as nn
    optimizer = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9, weight_decay=1e-4)
    model.train()
    logits = model(x)
    loss = nn.CrossEntropyLoss()(logits, y)
    optimizer.zero_grad()
    loss.backward()
    gradients = {n: digest(p.grad.numpy()) for n, p in model.named_parameters()}
    optimizer.step()
    return {
        "loss": float(loss.item()), "logits": [float(v) for v in logits.detach().numpy().ravel()],
        "gradients": gradients,
        "parameters_after_step": {n: digest(p.detach().numpy()) for n, p in model.named_parameters()},
        "buffers_after_step": {n: digest(b.numpy()) for n, b in model.named_buffers() if b.dtype == torch.float32},
    }


def run(variant, estimator, o):
    """ResNet-20, running statistics at PyTorch's defaults (the original fixtures, unchanged)."""
    model, _, _ = build("resnet20_1w1a", variant, estimator, o, statistics=False)
    x, y = batch(IMAGES)
    step = train_step(model, x, y)
    return {
        "variant": variant, "estimator": estimator.lower(), "o": o, "images": IMAGES,
        "learning_rate": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "samples": list(SAMPLES),
        **step,
    }


def run_network(model_name, images, estimator="ReSTE", o=2.0, imagenet=False, upscale=1):
    """Another network, 1W1A: an eval forward, then a training step from the same state (`imagenet`: the model of
    that name in model/models_imagenet/; `upscale`: each sample pixel repeated that many times each way)."""
    import torch
    variant = "1w1a"
    model, state, bm = build(model_name, variant, estimator, o, statistics=True, imagenet=imagenet)
    state_dict = []
    for n, t in model.state_dict().items():
        rule, index = state.get(n, ("none", None))
        state_dict.append({"name": n, "shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""),
                           "parameter": n in dict(model.named_parameters()), "rule": rule, "index": index,
                           "initial": digest(t.numpy())})
    x, y = batch(images, upscale)

    # Smallest |input| of a binarisation (sign) in each pass: how far the signs are from a float-rounding tie.
    smallest = {"value": float("inf")}

    def watch(module, inputs):
        smallest["value"] = min(smallest["value"], float(inputs[0].detach().abs().min()))

    hooks = [m.register_forward_pre_hook(watch) for m in model.modules() if isinstance(m, bm.BinarizeConv2d)]
    model.eval()
    with torch.no_grad():
        eval_logits = model(x)
    eval_margin = smallest["value"]
    smallest["value"] = float("inf")
    step = train_step(model, x, y)
    train_margin = smallest["value"]
    for h in hooks:
        h.remove()
    result = {
        "model": model_name, "num_classes": NUM_CLASSES, **({"imagenet": True, "upscale": upscale} if imagenet else {}),
        "variant": variant, "estimator": estimator.lower(), "o": o, "images": images,
        "learning_rate": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "samples": list(SAMPLES),
        "parameter_count": sum(p.numel() for p in model.parameters()),
        "state_dict": state_dict,
        "eval_logits": [float(v) for v in eval_logits.numpy().ravel()],
        "smallest_sign_input": {"eval": eval_margin, "train": train_margin},
        **step,
    }
    return result, eval_margin, train_margin


def write(result, path):
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


sys.path.insert(0, os.path.abspath(code))
os.makedirs(out_dir, exist_ok=True)
for variant, estimator, o in [("1w1a", "ReSTE", 2.0), ("1w1a", "STE", 1.0), ("1w32a", "ReSTE", 3.0)]:
    result = run(variant, estimator, o)
    path = os.path.join(out_dir, f"reference-step-{variant}-{estimator.lower()}.json")
    write(result, path)
    print(f"{path}: loss {result['loss']:.6f}")

counts = {}
for model_name, images in NETWORKS:
    result, eval_margin, train_margin = run_network(model_name, images)
    path = os.path.join(out_dir, f"reference-step-{model_name}-reste.json")
    write(result, path)
    counts[model_name] = result["parameter_count"]
    print(f"{path}: {images} images, loss {result['loss']:.6f}; smallest |sign input| "
          f"{eval_margin:.3g} (eval), {train_margin:.3g} (train)")

for model_name, images, upscale in IMAGENET_NETWORKS:
    result, eval_margin, train_margin = run_network(model_name, images, imagenet=True, upscale=upscale)
    stem = model_name.replace("_1w1a", "_imagenet_1w1a")
    path = os.path.join(out_dir, f"reference-step-{stem}-reste.json")
    write(result, path)
    counts[stem] = result["parameter_count"]
    print(f"{path}: {images} images of {32 * upscale}×{32 * upscale}, loss {result['loss']:.6f}; smallest |sign input| "
          f"{eval_margin:.3g} (eval), {train_margin:.3g} (train)")

model, _, _ = build("resnet20_1w1a", "1w1a", "ReSTE", 2.0, statistics=False)
counts = {"resnet20_1w1a": sum(p.numel() for p in model.parameters()), **counts}
print(f"parameters with {NUM_CLASSES} classes: " + ", ".join(f"{n} {c:,}" for n, c in counts.items()))
