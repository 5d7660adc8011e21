"""Test-wide settings: offline, quiet, deterministic, fast."""

import os

# Set before transformers / datasets / wandb are imported anywhere, so a missing network
# fails fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
METHODS = sorted(p.stem for p in (CONF_DIR / "method").glob("*.yaml"))
SUPERGLUE = ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc")

# Small enough to train and evaluate a tiny model in about a second.
FAST = [
    "model=tiny_s",
    "logger=none",
    "recipe.max_steps=2",
    "recipe.val_check_interval=2",
    "trainer.enable_progress_bar=false",
    "trainer.precision=32-true",  # exact comparisons; auto precision has tests of its own
    "recipe.batch_size=4",
    "data.train_limit=4",
    "data.eval_limit=4",
]


def compose_config(tmp_path: Path, overrides: list[str]):
    """The job config ``promptscale-train`` would see, with outputs under ``tmp_path``."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(
            "train",
            overrides=[f"paths.root={tmp_path}", f"paths.output_dir={tmp_path}/run", *overrides],
        )


@pytest.fixture
def make_config(tmp_path):
    def make(*overrides: str, fast: bool = True):
        return compose_config(tmp_path, [*(FAST if fast else []), *overrides])

    return make


@pytest.fixture
def make_job(make_config):
    """A built job (data loaded and attached, method built) through the one job seam."""
    from promptscale.job import JobSpec, build_job

    def make(*overrides: str, fast: bool = True, training: bool = True):
        return build_job(JobSpec.from_config(make_config(*overrides, fast=fast)), training=training)

    return make


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run faster (and as deterministically) on one intra-op thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
