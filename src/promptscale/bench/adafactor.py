"""Adafactor step: HF's per-parameter loop vs ``optim.adafactor.Adafactor``, on T5's parameters.

One optimizer step over every parameter of the first benchmarked size (T5 1.1 Small in the full
run: random init, random gradients), with the settings the recipes use (lr 1e-3, per-step decay
1e-5, decay rate 0.8, clipping 1.0, no parameter scaling, no relative step, no momentum):

* ``hf``: ``transformers.optimization.Adafactor`` (the optimizer the recipes trained with);
* ``ours``: ``Adafactor`` vectorised (``foreach=True``);
* ``ours_reference``: ``Adafactor(foreach=False)``, the per-parameter path in HF's order;
* ``torch_configured``: ``torch.optim.Adafactor`` with the workaround that gives it the same
  semantics (``eps[1]`` above every parameter's RMS, ``lr / eps[1]``; see tests/test_adafactor.py).

All arms update the same parameters from the same gradients, each with its own state (warmed up
by one untimed step); repeats alternate the arms and report medians and paired ratios.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from promptscale.bench.core import CONF_DIR, Settings, alternate, load, median, paired_ratio, sync
from promptscale.optim.adafactor import Adafactor

LR, WEIGHT_DECAY = 1e-3, 1e-5  # model tuning's rate, prompt tuning's per-step decay
TORCH_SCALE = 1e6  # torch's eps[1]: above any parameter's RMS, so that alpha_t = lr


def build_parameters(size: str, device: str, seed: int) -> list[torch.nn.Parameter]:
    """The parameters of ``conf/model/<size>.yaml``'s architecture, each with a random gradient."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(CONF_DIR / "model" / f"{size}.yaml")
    spec = instantiate(cfg, init="random", tokenizer="embedded")
    torch.manual_seed(seed)
    params = list(spec.build().to(device).parameters())
    for p in params:
        p.grad = torch.randn_like(p)
    return params


def optimizers(params: list[torch.nn.Parameter]) -> dict[str, torch.optim.Optimizer]:
    """The four arms, configured to the same update."""
    from transformers.optimization import Adafactor as HFAdafactor

    arms: dict[str, torch.optim.Optimizer] = {
        "hf": HFAdafactor(
            params,
            lr=LR,
            weight_decay=WEIGHT_DECAY / LR,
            decay_rate=-0.8,
            clip_threshold=1.0,
            beta1=None,
            scale_parameter=False,
            relative_step=False,
            warmup_init=False,
        ),
        "ours": Adafactor(params, lr=LR, weight_decay=WEIGHT_DECAY),
        "ours_reference": Adafactor(params, lr=LR, weight_decay=WEIGHT_DECAY, foreach=False),
    }
    if hasattr(torch.optim, "Adafactor"):
        arms["torch_configured"] = torch.optim.Adafactor(
            params,
            lr=LR / TORCH_SCALE,
            eps=(1e-15, TORCH_SCALE),
            weight_decay=WEIGHT_DECAY * TORCH_SCALE / LR,
            beta2_decay=-0.8,
            d=1.0,
        )
    return arms


def timed(optimizer: torch.optim.Optimizer, steps: int, device: str) -> Callable[[], dict]:
    """An arm: ``steps`` optimizer steps, timed; returns seconds per step."""

    def go() -> dict:
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            optimizer.step()
        sync(device)
        return {"seconds": (time.perf_counter() - t0) / steps}

    return go


def run(settings: Settings, log: Callable[[str], None]) -> dict:
    size = settings.sizes[0]
    steps = 1 if settings.tiny else 3
    log(f"adafactor @ {size}: building parameters")
    params = build_parameters(size, settings.device, settings.seed)
    arms = optimizers(params)
    for opt in arms.values():  # state and scratch allocation are not what is compared
        opt.step()
    repeats = 1 if settings.tiny else 5  # an optimizer step is cheap next to a training step
    results = alternate({name: timed(opt, steps, settings.device) for name, opt in arms.items()}, repeats, log)
    seconds = {name: median([r.get("seconds") for r in rows]) for name, rows in results.items()}
    return {
        "what": __doc__.replace("\n", " ").strip(),
        "size": size,
        "device": settings.device,
        "threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in params),
        "tensors": len(params),
        "steps_per_repeat": steps,
        "repeats": repeats,
        "seconds_per_step": seconds,
        "ratio_hf_over_ours": paired_ratio(results["hf"], results["ours"], "seconds"),
        "ratio_hf_over_ours_reference": paired_ratio(results["hf"], results["ours_reference"], "seconds"),
        "ratio_torch_over_ours": paired_ratio(results.get("torch_configured", []), results["ours"], "seconds"),
        "errors": {name: r["error"] for name, rows in results.items() for r in rows if "error" in r},
        "load": load(),
    }


if __name__ == "__main__":  # python -m promptscale.bench.adafactor [--tiny]: this section alone
    import json
    import sys

    from promptscale.bench.core import quiet

    quiet()
    torch.set_num_threads(1)
    tiny = "--tiny" in sys.argv
    settings = Settings.tiny_run("cpu") if tiny else Settings(sizes=("small",))
    print(json.dumps(run(settings, lambda m: print(m, file=sys.stderr)), indent=1))
