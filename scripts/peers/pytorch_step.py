#!/usr/bin/env python3
"""Times one training step of the ReSTE authors' PyTorch ResNet-20 1W1A: the training peer of `bnn bench train`.

usage: pytorch_step.py --reference-code DIR [--threads N] [--batch-size 256] [--warmup-steps 2] [--steps 8]
  DIR  a checkout of the authors' public repository (main.py, model/, utils/)
Prints one JSON object: images_per_second (images of the timed steps over their wall time, as `bnn bench train`
counts), seconds_per_step, the torch version.

The step is the one the authors' main.py runs: forward, cross-entropy, backward, SGD (lr 0.1, momentum 0.9,
weight decay 1e-4), on random CIFAR-shaped batches (speed does not depend on the pixels). The estimator is ReSTE at
its starting point (o = 1, t = 1.5), which costs the same as later in training.
"""
import argparse, json, os, sys, time


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference-code", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()

    code = os.path.abspath(args.reference_code)
    if not os.path.isfile(os.path.join(code, "model", "models_cifar", "resnet20.py")):
        sys.exit(f"pytorch_step: {code} does not look like the ReSTE code (no model/models_cifar/resnet20.py)")
    sys.path.insert(0, code)
    # The reference code's utils/arguments parses sys.argv when imported; give it the estimator and nothing else.
    sys.argv = ["main.py", "--estimator", "ReSTE"]
    import torch
    import torch.nn as nn
    from model.models_cifar import resnet20_1w1a

    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    model = resnet20_1w1a().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    loss_function = nn.CrossEntropyLoss()
    # Four distinct batches, cycled, so that no step sees exactly the previous step's input.
    batches = [(torch.randn(args.batch_size, 3, 32, 32), torch.randint(0, 10, (args.batch_size,))) for _ in range(4)]

    def step(index):
        images, labels = batches[index % len(batches)]
        optimizer.zero_grad()
        loss = loss_function(model(images), labels)
        loss.backward()
        optimizer.step()

    for index in range(args.warmup_steps):
        step(index)
    started = time.perf_counter()
    for index in range(args.steps):
        step(index)
    seconds = (time.perf_counter() - started) / args.steps
    print(json.dumps({"peer": "pytorch-reste", "model": "resnet20-1w1a", "batch": args.batch_size,
                      "threads": args.threads, "steps": args.steps, "seconds_per_step": seconds,
                      "images_per_second": args.batch_size / seconds, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
