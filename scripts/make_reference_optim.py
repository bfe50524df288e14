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
  * "recipe_schedulers": MultiStepLR and SequentialLR (warm-up then cosine, and three schedulers in a
    row) on the same two-group rig as "schedulers"; "spec" says how to build each one (nested for
    SequentialLR). tests/test_lr_scheduler_recipes.cpp replays them.
  * "plateau": ReduceLROnPlateau fed a fixed metric sequence: the lrs, best, num_bad_epochs and
    cooldown_counter after each step.
  * "ema": torch.optim.swa_utils.AveragedModel with the EMA avg_fn (decay * avg + (1 - decay) * p)
    over a Linear(3, 2) + BatchNorm1d(2) whose state is set to fixed values before each update; the
    buffers are copied after each update (ember's rule). The averaged state after every update.
    tests/test_ema.cpp replays them.

The script is deterministic (values come from fixed formulas, not a random generator) and floats are
written with repr (shortest round-trip form), so re-running it writes an identical file.
"""

import json
import math
import os
import warnings

import torch

torch.set_default_dtype(torch.float64)
# SequentialLR restarts a scheduler with the deprecated step(0) itself; its warning is not ours.
warnings.filterwarnings("ignore", message="The epoch parameter")

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


def build_scheduler(opt, spec):
    """A scheduler from a JSON-able spec: {"type": ..., "args": {...}} (SequentialLR nests specs)."""
    S = torch.optim.lr_scheduler
    t, a = spec["type"], spec["args"]
    if t == "SequentialLR":
        subs = [build_scheduler(opt, sub) for sub in a["schedulers"]]
        return S.SequentialLR(opt, schedulers=subs, milestones=a["milestones"])
    return getattr(S, t)(opt, **a)


def recipe_schedulers():
    specs = [
        ("multi_step", {"type": "MultiStepLR", "args": {"milestones": [2, 5, 5, 8], "gamma": 0.5}}, 10),
        ("multi_step_unsorted", {"type": "MultiStepLR", "args": {"milestones": [6, 3], "gamma": 0.1}}, 8),
        ("warmup_cosine",
         {"type": "SequentialLR", "args": {
             "schedulers": [{"type": "LinearLR", "args": {"start_factor": 0.1, "end_factor": 1.0, "total_iters": 5}},
                            {"type": "CosineAnnealingLR", "args": {"T_max": 10, "eta_min": 0.0001}}],
             "milestones": [5]}}, 18),
        ("sequential_three",
         {"type": "SequentialLR", "args": {
             "schedulers": [{"type": "LinearLR", "args": {"start_factor": 0.5, "end_factor": 1.0, "total_iters": 2}},
                            {"type": "StepLR", "args": {"step_size": 2, "gamma": 0.5}},
                            {"type": "MultiStepLR", "args": {"milestones": [1, 3], "gamma": 0.1}}],
             "milestones": [3, 7]}}, 12),
    ]
    return [dict(scheduler_case(name, lambda o, spec=spec: build_scheduler(o, spec), steps), spec=spec)
            for name, spec, steps in specs]


def plateau_cases():
    S = torch.optim.lr_scheduler
    cases = [
        ("min_rel", {"mode": "min", "factor": 0.5, "patience": 2},
         [1.0, 0.9, 0.9, 0.8999, 0.91, 0.95, 0.5, 0.49996, 0.49999, 0.6, 0.7, 0.8, 0.4, 0.45, 0.46, 0.47]),
        ("max_abs_cooldown_min_lr",
         {"mode": "max", "factor": 0.1, "patience": 1, "threshold": 0.01, "threshold_mode": "abs", "cooldown": 2,
          "min_lr": [0.0005, 0.002]},
         [0.1, 0.2, 0.205, 0.21, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]),
        ("min_abs_patience0", {"mode": "min", "factor": 0.3, "patience": 0, "threshold": 0.05,
                               "threshold_mode": "abs"},
         [2.0, 1.9, 1.96, 1.5, 1.5, 1.0, 0.99]),
        ("max_rel_eps", {"mode": "max", "factor": 0.1, "patience": 0, "threshold": 0.1, "threshold_mode": "rel",
                         "min_lr": [0.1 - 5e-9, 0.001]},
         [1.0, 1.05, 1.2, 1.0, 1.0, 1.0]),
    ]
    out = []
    for name, args, metrics in cases:
        a = torch.zeros(2, requires_grad=True)
        b = torch.zeros(3, requires_grad=True)
        opt = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.05}], lr=0.1, momentum=0.9)
        sched = S.ReduceLROnPlateau(opt, **args)
        steps = []
        for m in metrics:
            opt.step()
            sched.step(m)
            steps.append({"lrs": [g["lr"] for g in opt.param_groups], "best": sched.best,
                          "num_bad_epochs": sched.num_bad_epochs, "cooldown_counter": sched.cooldown_counter})
        out.append({"name": name, "args": args, "metrics": metrics, "steps": steps})
    return out


def ema_model_state(model, k):
    """Sets every parameter and buffer of the model to fixed values for update k."""
    with torch.no_grad():
        for j, (name, t) in enumerate(model.state_dict().items()):
            if t.dtype == torch.int64:
                t.fill_(3 * k + j)
            else:
                n = t.numel()
                values = [math.sin(0.7 * i + 1.3 * k + 0.4 * j) + (1.5 if "running_var" in name else 0.0)
                          for i in range(n)]
                t.copy_(torch.tensor(values).reshape(t.shape))


def ema_cases():
    out = []
    for name, decay, warmup, updates in [("decay_0.9", 0.9, False, 6), ("decay_0.99_warmup", 0.99, True, 6)]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
        ema_model_state(model, 0)

        def ema_avg(avg, p, n, decay=decay, warmup=warmup):
            d = min(decay, (1 + float(n)) / (10 + float(n))) if warmup else decay
            return d * avg + (1 - d) * p

        ema = torch.optim.swa_utils.AveragedModel(model, avg_fn=ema_avg)
        states, averaged = [], []
        for k in range(1, updates + 1):
            ema_model_state(model, k)
            ema.update_parameters(model)
            with torch.no_grad():  # ember's rule: buffers are copied, not averaged
                for b_ema, b in zip(ema.module.buffers(), model.buffers()):
                    b_ema.copy_(b)
            states.append({n: flat(t) for n, t in model.state_dict().items()})
            averaged.append({n: flat(t) for n, t in ema.module.state_dict().items()})
        out.append({"name": name, "decay": decay, "warmup": warmup,
                    "shapes": {n: list(t.shape) for n, t in model.state_dict().items()},
                    "states": states, "averaged": averaged})
    return out


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
        "recipe_schedulers": recipe_schedulers(),
        "plateau": plateau_cases(),
        "ema": ema_cases(),
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "reference_optim.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    print("wrote", os.path.normpath(path))


if __name__ == "__main__":
    main()
