#!/usr/bin/env python3
"""PyTorch side of the ResNet-20 step benchmark, next to bench/resnet20_step.cpp (ember) and
bench/libtorch/resnet20.cpp (the libtorch C++ anchor): the same network and the same step, timed the
same way.

Network: the CIFAR ResNets of ember's model zoo (nn/models/resnet.h), with the same module names
(conv1, bn1, layer1.0.conv1, ..., fc): a 3x3 stem conv + BN + ReLU, stages of basic blocks
(conv3x3-BN-ReLU-conv3x3-BN + shortcut, ReLU), the first block of every later stage with stride 2 and a
1x1 conv + BN projection shortcut, global average pool, fc. resnet20: 3 stages of 3 blocks, 16/32/64
channels. Step: forward on a fixed random batch [B,3,32,32] with random labels of 10 classes,
cross-entropy, backward, SGD (lr 0.1, momentum 0.9), zero_grad; loss.item() ends each step.

    /usr/bin/python3 bench/resnet20_pytorch.py [--batch 128] [--threads 2] [--warmup 5] [--steps 20]
                                               [--model resnet20] [--device cpu|cuda]

Prints a summary line and one JSON line (the keys of the ember and libtorch programs): median, min
and max step in ms over --steps timed steps after --warmup untimed ones, peak RSS, the math libraries
loaded. On --device cuda (scripts/gpu_check.sh) every step ends in loss.item(), which waits for the
GPU, and the line adds "peak_device_mb". This file is also imported by
scripts/make_reference_models.py (the names and parameter counts the zoo is tested against).
"""
import argparse
import json
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from mnist_pytorch import loaded_math_libraries  # the same /proc/self/maps rule


class BasicBlock(nn.Module):
    """torchvision's BasicBlock (written out: torchvision is not installed here); nn::ResidualBlock."""

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (self.downsample(x) if self.downsample is not None else x))


class ResNet(nn.Module):
    """nn::models::ResNet: blocks and channels per stage."""

    def __init__(self, blocks, channels, in_channels=3, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels[0])
        inplanes = channels[0]
        for s, (n, c) in enumerate(zip(blocks, channels)):
            stage = []
            for b in range(n):
                stage.append(BasicBlock(inplanes, c, 2 if s > 0 and b == 0 else 1))
                inplanes = c
            setattr(self, f"layer{s + 1}", nn.Sequential(*stage))
        self.stages = len(blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        for s in range(self.stages):
            x = getattr(self, f"layer{s + 1}")(x)
        return self.fc(self.avgpool(x).flatten(1))


MODELS = {
    "resnet8": lambda: ResNet([1] * 3, [16, 32, 64]),
    "resnet20": lambda: ResNet([3] * 3, [16, 32, 64]),
    "resnet56": lambda: ResNet([9] * 3, [16, 32, 64]),
    "resnet18": lambda: ResNet([2] * 4, [64, 128, 256, 512]),
}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--model", choices=sorted(MODELS), default="resnet20")
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    if a.batch < 1 or a.threads < 1 or a.warmup < 0 or a.steps < 1:
        p.error("--batch, --threads and --steps must be >= 1, --warmup >= 0")

    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    device = torch.device(a.device)
    model = MODELS[a.model]().to(device)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(a.batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (a.batch,), device=device)

    def step():
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()  # waits for the step to finish on any device

    for _ in range(a.warmup):
        step()
    ms, loss = [], 0.0
    for _ in range(a.steps):
        start = time.perf_counter()
        loss = step()
        ms.append((time.perf_counter() - start) * 1000)
    med = statistics.median(ms)
    print(f"pytorch {a.model} batch {a.batch}, {torch.get_num_threads()} threads: step {med:.1f} ms median "
          f"(min {min(ms):.1f}, max {max(ms):.1f}) over {a.steps} steps, loss {loss:.4f}")
    result = {"framework": "pytorch", "torch": torch.__version__, "model": a.model, "batch": a.batch,
              "threads": torch.get_num_threads(), "steps": a.steps, "step_ms_median": round(med, 3),
              "step_ms_min": round(min(ms), 3), "step_ms_max": round(max(ms), 3), "loss": round(loss, 5),
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
              "libs": loaded_math_libraries(), "device": str(device)}
    if device.type == "cuda":
        result["peak_device_mb"] = torch.cuda.max_memory_allocated() / 1048576
    print(json.dumps(result))


if __name__ == "__main__":
    main()
