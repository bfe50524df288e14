#!/usr/bin/python3
"""Writes tests/data/reference_optim.json: PyTorch's answers for ember's optimizers, LR schedulers
and gradient clipping.

Run from anywhere, with Debian's python3 (it has torch 1.13 CPU; the pyenv `python3` on PATH does not):

    /usr/bin/python3 scripts/make_reference_optim.py

tests/test_optim.cpp replays every case with ember and compares.

  * "optimizers": each config runs 5 steps on the same float64 parameters with the same fixed
    per-step gradients (a null gradient means "this parameter got no gradient at this step": the
    optimizer must skip it, and its step count must not advance). The parameters after every step
    are stored. "groups" lists the parameter groups: each has the indices of its parameters and the
    options that differ from the config's defaults.
  * "schedulers": each scheduler wraps SGD (or Adam, to check beta1 cycling) with two parameter
    groups of different learning rates; the file holds get_last_lr() right after construction and
    after each step (and the momentum / beta1 of each group, which OneCycleLR cycles).
  * "clip": clip_grad_norm_ on fixed gradients: the returned total norm and the gradients after.

The script is deterministic (values come from fixed formulas, not a random generator) and floats are
written with repr (shortest round-trip form), so re-running it writes an identical file.
"""

import json
import math
import os

import torch

torch.set_default_dtype(torch.float64)

SHAPES = [[2, 3], [4]]
STEPS = 5


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def initial_params():
    # Smooth, non-symmetric values in [-1, 1] so every element follows its own trajectory.
    out = []
    for k, shape in enumerate(SHAPES):
        n = math.prod(shape)
        out.append(torch.tensor([math.sin(1.3 * i + 0.7 * k + 0.2) for i in range(n)]).reshape(shape))
    return out


def step_grads():
    # grads[s][k]: gradient of parameter k at step s, or None (parameter 1 gets none at step 2).
    grads = []
    for s in range(STEPS):
        row = []
        for k, shape in enumerate(SHAPES):
            if k == 1 and s == 2:
                row.append(None)
                continue
            n = math.prod(shape)
            values = [math.cos(0.9 * i + 1.1 * s + 0.3 * k) * (1 + 0.5 * s) for i in range(n)]
            row.append(torch.tensor(values).reshape(shape))
        grads.append(row)
    return grads


# name, optimizer class, defaults, groups ([param indices], overrides)
OPTIMIZERS = [
    ("sgd_plain", "SGD", {"lr": 0.1}, None),
    ("sgd_momentum_nesterov_wd", "SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}, None),
    ("sgd_dampening", "SGD", {"lr": 0.1, "momentum": 0.8, "dampening": 0.3}, None),
    ("sgd_groups", "SGD", {"lr": 0.1, "momentum": 0.9}, [([0], {}), ([1], {"lr": 0.01, "momentum": 0.5})]),
    ("adam", "Adam", {"lr": 0.01}, None),
    ("adam_weight_decay", "Adam", {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}, None),
    ("adam_amsgrad", "Adam", {"lr": 0.05, "amsgrad": True}, None),
    ("adamw", "AdamW", {"lr": 0.01}, None),
    ("adamw_amsgrad_wd", "AdamW", {"lr": 0.03, "betas": (0.85, 0.95), "weight_decay": 0.2, "amsgrad": True}, None),
    ("adam_groups", "Adam", {"lr": 0.01}, [([1], {"lr": 0.1, "betas": (0.5, 0.9)}), ([0], {})]),
]


def options_json(opts):
    out = {}
    for k, v in opts.items():
        if k == "betas":
            out["beta1"], out["beta2"] = float(v[0]), float(v[1])
        else:
            out[k] = v
    return out


def run_optimizer(name, cls, defaults, groups):
    params = [p.clone().requires_grad_() for p in initial_params()]
    grads = step_grads()
    if groups is None:
        groups = [(list(range(len(params))), {})]
    torch_groups = [dict(params=[params[i] for i in idx], **over) for idx, over in groups]
    opt = getattr(torch.optim, cls)(torch_groups, **defaults)
    after = []
    for s in range(STEPS):
        opt.zero_grad()
        for p, g in zip(params, grads[s]):
            p.grad = None if g is None else g.clone()
        opt.step()
        after.append([flat(p) for p in params])
    return {
        "name": name,
        "type": cls,
        "options": options_json(defaults),
        "groups": [{"params": idx, "options": options_json(over)} for idx, over in groups],
        "after_step": after,
    }


def scheduler_case(name, make, steps, use_adam=False):
    a = torch.zeros(2, requires_grad=True)
    b = torch.zeros(3, requires_grad=True)
    if use_adam:
        opt = torch.optim.Adam([{"params": [a]}, {"params": [b], "lr": 0.05}], lr=0.1)
    else:
        opt = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.05}], lr=0.1, momentum=0.9)
    sched = make(opt)

    def momenta():
        return [g["betas"][0] if use_adam else g["momentum"] for g in opt.param_groups]

    lrs, moms = [list(sched.get_last_lr())], [momenta()]
    for _ in range(steps):
        opt.step()  # no gradients: a no-op, but keeps PyTorch's "step the optimizer first" check quiet
        sched.step()
        lrs.append(list(sched.get_last_lr()))
        moms.append(momenta())
    return {"name": name, "optimizer": "Adam" if use_adam else "SGD", "lrs": lrs, "momenta": moms}


def schedulers():
    S = torch.optim.lr_scheduler
    return [
        dict(scheduler_case("step_lr", lambda o: S.StepLR(o, step_size=3, gamma=0.5), 10),
             type="StepLR", args={"step_size": 3, "gamma": 0.5}),
        dict(scheduler_case("cosine", lambda o: S.CosineAnnealingLR(o, T_max=10, eta_min=0.001), 25),
             type="CosineAnnealingLR", args={"T_max": 10, "eta_min": 0.001}),
        dict(scheduler_case("linear_warmup", lambda o: S.LinearLR(o, start_factor=0.25, total_iters=4), 8),
             type="LinearLR", args={"start_factor": 0.25, "end_factor": 1.0, "total_iters": 4}),
        dict(scheduler_case("linear_decay",
                            lambda o: S.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=6), 9),
             type="LinearLR", args={"start_factor": 1.0, "end_factor": 0.1, "total_iters": 6}),
        dict(scheduler_case("one_cycle", lambda o: S.OneCycleLR(o, max_lr=[1.0, 0.5], total_steps=10), 10),
             type="OneCycleLR", args={"max_lr": [1.0, 0.5], "total_steps": 10}),
        dict(scheduler_case("one_cycle_adam_three_phase_linear",
                            lambda o: S.OneCycleLR(o, max_lr=0.3, total_steps=12, pct_start=0.25,
                                                   anneal_strategy="linear", three_phase=True, div_factor=10.0,
                                                   final_div_factor=100.0), 12,
                            use_adam=True),
             type="OneCycleLR", args={"max_lr": [0.3, 0.3], "total_steps": 12, "pct_start": 0.25,
                                      "anneal_strategy": "linear", "three_phase": True, "div_factor": 10.0,
                                      "final_div_factor": 100.0}),
        dict(scheduler_case("one_cycle_no_momentum",
                            lambda o: S.OneCycleLR(o, max_lr=[0.8, 0.4], total_steps=7, cycle_momentum=False), 7),
             type="OneCycleLR", args={"max_lr": [0.8, 0.4], "total_steps": 7, "cycle_momentum": False}),
    ]


def clip_cases():
    grads = [torch.tensor([[0.5, -1.5, 2.0], [3.0, -0.25, 1.0]]), torch.tensor([-2.0, 0.75, 4.0, -1.0])]
    cases = []
    for max_norm, norm_type in [(2.0, 2.0), (100.0, 2.0), (3.0, 1.0), (1.5, math.inf), (2.5, 3.0)]:
        ps = [torch.zeros_like(g, requires_grad=True) for g in grads]
        for p, g in zip(ps, grads):
            p.grad = g.clone()
        total = torch.nn.utils.clip_grad_norm_(ps, max_norm, norm_type)
        cases.append({
            "max_norm": max_norm,
            "norm_type": "inf" if math.isinf(norm_type) else norm_type,
            "total_norm": float(total),
            "grads_after": [flat(p.grad) for p in ps],
        })
    return {"grads": [flat(g) for g in grads], "shapes": [list(g.shape) for g in grads], "cases": cases}


def main():
    grads = step_grads()
    ref = {
        "torch_version": torch.__version__,
        "shapes": SHAPES,
        "params": [flat(p) for p in initial_params()],
        "grads": [[None if g is None else flat(g) for g in row] for row in grads],
        "optimizers": [run_optimizer(*cfg) for cfg in OPTIMIZERS],
        "schedulers": schedulers(),
        "clip": clip_cases(),
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "reference_optim.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    print("wrote", os.path.normpath(path))


if __name__ == "__main__":
    main()
