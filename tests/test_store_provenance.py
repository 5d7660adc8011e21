"""Provenance in every row: library versions, accelerator and precision, cheap and never raising."""

from __future__ import annotations

import importlib.metadata

import torch

from promptscale.store import provenance as prov

KEYS = {"torch_version", "transformers_version", "peft_version", "lightning_version", "accelerator", "precision"}


def test_versions_accelerator_and_precision_of_this_machine():
    out = prov.provenance("bf16-mixed", "cpu")
    assert set(out) == KEYS
    assert out["torch_version"] == torch.__version__
    assert out["lightning_version"] == importlib.metadata.version("lightning")
    assert out["precision"] == "bf16-mixed"
    assert out["accelerator"] == prov.cpu_name() and out["accelerator"] not in ("", "unknown")


def test_gpu_name_when_the_run_uses_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: f"NVIDIA H200 #{i}")
    assert prov.provenance("32-true", "cuda")["accelerator"] == "NVIDIA H200 #0"
    assert prov.provenance("32-true", "cuda:1")["accelerator"] == "NVIDIA H200 #1"
    assert prov.provenance("32-true")["accelerator"] == "NVIDIA H200 #0"  # auto: the GPU torch sees
    assert prov.provenance("32-true", "cpu")["accelerator"] == prov.cpu_name()  # a CPU run on a GPU node


def test_never_raises(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("broken install")

    monkeypatch.setattr(importlib.metadata, "version", broken)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", broken)
    out = prov.provenance("16-mixed", "gpu")
    assert out["torch_version"] == "unknown" and out["accelerator"] == "unknown" and out["precision"] == "16-mixed"
