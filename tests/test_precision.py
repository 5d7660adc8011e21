"""``trainer.precision=auto``: how it resolves, and what bf16-mixed changes (within tolerance).

Resolution is tested against monkeypatched hardware (CPU flags, CUDA devices). The tolerance:
four prompt-tuning steps of a tiny T5 through the Lightning trainer (the real ``setup()``: frozen
Linear weights in bf16, speed switches), bf16-mixed vs 32-true from the same seed (so the same
dropout draws): every step's loss within 1% relative, the trained prompt within 3% relative
(Frobenius), and the rank-classification scores of the dev examples within 1% relative on average.
"""

import lightning as L
import pytest
import torch

from promptscale import hardware
from promptscale.hardware import native_bf16, resolve_precision

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def cpu(monkeypatch):
    """A CPU with the given /proc/cpuinfo flags and no CUDA device."""

    def make(*flags: str):
        monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset(flags))
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    return make


def test_cpu_with_native_bf16_resolves_to_bf16_mixed(cpu):
    for flags in (("avx512f", "amx_bf16", "amx_tile"), ("avx512f", "avx512_bf16")):
        cpu(*flags)
        assert resolve_precision("auto", "cpu") == "bf16-mixed"
        assert native_bf16("auto") == (True, f"the CPU has {next(f for f in flags if 'bf16' in f)}")


def test_cpu_without_native_bf16_resolves_to_fp32_and_says_why(cpu, caplog):
    cpu("avx2", "fma", "avx512f")
    with caplog.at_level("INFO", logger="promptscale.hardware"):
        assert resolve_precision("auto", "cpu") == "32-true"
    assert "auto -> 32-true (the CPU has none of amx_bf16, avx512_bf16)" in caplog.text
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"  # an explicit choice is kept


def test_gpu_resolution_follows_the_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA A100")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert resolve_precision("auto", "gpu") == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert native_bf16("gpu") == (False, "Tesla V100 has no native bf16")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert native_bf16("gpu") == (False, "no CUDA device is visible")


def test_auto_is_resolved_before_hashing(make_config, cpu):
    from promptscale.job import JobSpec

    cpu("amx_bf16")
    auto = JobSpec.from_config(make_config("trainer.precision=auto"))
    explicit = JobSpec.from_config(make_config("trainer.precision=bf16-mixed"))
    assert auto.cfg.trainer.precision == "bf16-mixed" and auto.config_hash == explicit.config_hash
    cpu()
    assert JobSpec.from_config(make_config("trainer.precision=auto")).cfg.trainer.precision == "32-true"


class Losses(L.Callback):
    def __init__(self) -> None:
        self.values: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.values.append(float(outputs["loss"]))


def train_a_little(make_job, precision: str):
    """Four prompt-tuning steps of tiny_s on CB at ``precision``; losses, prompt, dev scores."""
    job = make_job("method=prompt_tuning", "task=cb", "data.train_limit=16", f"trainer.precision={precision}")
    losses = Losses()
    trainer = L.Trainer(
        accelerator="cpu", precision=precision, max_steps=4, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, callbacks=[losses],
    )  # fmt: skip
    trainer.fit(job.method, train_dataloaders=job.data.train_dataloader())
    method = job.method.eval()
    batch = job.data.collate_eval(job.data.eval_items[:8])
    with torch.no_grad(), job.autocast():
        scores = method.choice_log_likelihoods(batch)  # [C]
    return losses.values, method.prompt.embedding.detach().clone(), scores.float()


def test_bf16_mixed_training_stays_within_tolerance_of_fp32(make_job):
    fp32_losses, fp32_prompt, fp32_scores = train_a_little(make_job, "32-true")
    bf16_losses, bf16_prompt, bf16_scores = train_a_little(make_job, "bf16-mixed")
    assert len(fp32_losses) == len(bf16_losses) == 4
    for full, half in zip(fp32_losses, bf16_losses):
        assert abs(half / full - 1) < 0.01  # same seed, same dropout draws: precision is the difference
    assert not torch.equal(bf16_prompt, fp32_prompt)  # bf16 really ran
    assert ((bf16_prompt - fp32_prompt).norm() / fp32_prompt.norm()).item() < 0.03  # measured 0.019
    relative = ((bf16_scores - fp32_scores).abs() / fp32_scores.abs()).mean().item()
    assert relative < 0.01  # summed log-likelihood per choice: measured 0.4%
