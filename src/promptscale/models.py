"""T5 backbones: one typed spec per checkpoint, built offline from its architecture or loaded.

``ModelSpec`` is what ``conf/model/*.yaml`` instantiates. It carries the architecture so that
``init=random`` builds the exact shape with no download (benchmarks, parameter counts, tests)
and so that a loaded checkpoint can be checked against the size it claims to be.

Families (``families.FAMILIES``; each a curve of its own on the figure, rows carry ``family``):

* ``t5_1_1_lm_adapt`` (the paper's default), ``t5_1_1`` and ``flan_t5``: the T5 1.1
  architecture (gated-GELU feed-forward, untied input and output embeddings, no rescaling of the
  decoder output), so the same parameter totals (Lester et al. 2021, Table 4).
* ``mt5``: T5 1.1 with a 250,112-row vocabulary (Xue et al. 2021).
* ``t5``: the original T5 (Raffel et al. 2020): ReLU feed-forward, sizes of their own, and the
  input embedding doubles as the LM head, with the decoder output scaled by ``d_model ** -0.5``
  before it (``tied_embeddings``).
* ``tiny``: offline test and demo models.

How transformers 5 encodes the difference (``T5Config.__post_init__``): ``tie_word_embeddings``
is forced to ``True`` on every ``T5Config`` and the value passed in survives only as
``scale_decoder_outputs`` (``False`` only when ``tie_word_embeddings=False`` was passed). A fresh
``T5ForConditionalGeneration`` therefore always shares ``lm_head.weight`` with ``shared.weight``;
a loaded checkpoint storing two different tensors is left untied by ``from_pretrained``. There is
no ``tie_encoder_decoder`` in transformers 5 (encoder and decoder always share ``shared``).
So ``tied_embeddings`` sets ``scale_decoder_outputs`` through ``tie_word_embeddings`` and, when
false, :func:`untie_lm_head` gives the head its own tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoTokenizer, PreTrainedTokenizerBase, T5Config, T5ForConditionalGeneration

from promptscale.families import check_family, legacy_family

EMBEDDED_TOKENIZER = "embedded"
EMBEDDED_TOKENIZER_DIR = Path(__file__).parent / "assets" / "tiny_tokenizer"
INITS = ("pretrained", "random")


@dataclass
class ModelSpec:
    """A T5-family checkpoint and its architecture (Raffel et al. 2020; see the module docstring).

    Attributes:
        name: Config name, recorded in result rows (e.g. ``small``, ``flan_t5_base``).
        size: Size label on the figure, one of ``families.FAMILIES[family]`` (``small`` ... ``xxl``,
            ``3b``, ``11b``, ``tiny_*``).
        hub_id: Hugging Face Hub id of the weights; ``None`` for offline-only models.
        path: Local directory in the Hugging Face layout; wins over ``hub_id``.
        init: ``pretrained`` loads weights; ``random`` builds the architecture offline.
        tokenizer: Hub id or local directory of the tokenizer, ``embedded`` for the offline
            tokenizer shipped with the package, ``None`` for the weights' own.
        vocab_size, d_model, d_ff, d_kv, num_layers, num_heads: The architecture. Note that
            ``num_heads * d_kv`` need not equal ``d_model`` (Small: 6 x 64 = 384 != 512).
        feed_forward_proj: ``gated-gelu`` for T5 1.1, Flan-T5 and mT5; ``relu`` for the original T5.
        relative_attention_num_buckets: 32 for every T5.
        dropout_rate: 0.1 when fine-tuning (checkpoints were pre-trained without dropout).
        family: One of ``families.FAMILIES`` (rows' ``family``: a sweep over a family draws its own
            curve); ``None`` (configs saved before families existed) is read from ``name``.
        tied_embeddings: The LM head is the input embedding and the decoder output is scaled
            by ``d_model ** -0.5`` before it (original T5); ``False`` for T5 1.1 and its kin.
        seed: Seed of a random init (set by the job from the run's ``seed``): the weights are a
            pure function of it, whatever was drawn before, so a saved run can be rebuilt.
    """

    name: str
    size: str
    vocab_size: int
    d_model: int
    d_ff: int
    d_kv: int
    num_layers: int
    num_heads: int
    hub_id: str | None = None
    path: str | None = None
    init: str = "pretrained"
    tokenizer: str | None = None
    feed_forward_proj: str = "gated-gelu"
    relative_attention_num_buckets: int = 32
    dropout_rate: float = 0.1
    family: str | None = None
    tied_embeddings: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.family is None:
            self.family = legacy_family(self.name)
        check_family(self.family, self.size)
        if self.init not in INITS:
            raise ValueError(f"model.init={self.init!r} is not one of {INITS}")
        for key in ("vocab_size", "d_model", "d_ff", "d_kv", "num_layers", "num_heads"):
            if getattr(self, key) <= 0:
                raise ValueError(f"model.{key} must be positive, got {getattr(self, key)}")
        if self.init == "pretrained" and not (self.path or self.hub_id):
            raise ValueError(f"model {self.name!r}: init=pretrained needs model.path or model.hub_id")
        if self.path is not None and self.init == "random":
            raise ValueError(
                f"model.path={self.path} is set but model.init=random builds random weights and would "
                f"ignore it: drop model.path, or use model.init=pretrained to load it"
            )
        if self.path is not None and not Path(self.path).expanduser().is_dir():
            raise FileNotFoundError(
                f"model.path={self.path}: folder not found (expected a Hugging Face model folder with "
                f"config.json and model.safetensors)"
            )

    def t5_config(self) -> T5Config:
        """The ``T5Config`` of this architecture (see the module docstring on tied embeddings)."""
        return T5Config(
            vocab_size=self.vocab_size,
            d_model=self.d_model,
            d_ff=self.d_ff,
            d_kv=self.d_kv,
            num_layers=self.num_layers,
            num_decoder_layers=self.num_layers,
            num_heads=self.num_heads,
            feed_forward_proj=self.feed_forward_proj,
            relative_attention_num_buckets=self.relative_attention_num_buckets,
            dropout_rate=self.dropout_rate,
            # Original T5 ties the LM head and rescales decoder outputs by d_model**-0.5; T5 1.1 does
            # neither. transformers 5 reads this flag for the rescaling only, hence _head() below.
            tie_word_embeddings=self.tied_embeddings,
            decoder_start_token_id=0,
        )

    def build(self) -> T5ForConditionalGeneration:
        """Returns the backbone: loaded weights (``pretrained``) or a fresh random init."""
        if self.init == "pretrained":
            return self._head(self._load())
        with torch.random.fork_rng(devices=[]):  # a pure function of the seed; the caller's RNG untouched
            torch.manual_seed(self.seed)
            return self._head(T5ForConditionalGeneration(self.t5_config()))

    def _head(self, model: T5ForConditionalGeneration) -> T5ForConditionalGeneration:
        """The LM head as the family has it: the input embedding itself (tied) or a tensor of its own."""
        if not self.tied_embeddings:
            return untie_lm_head(model)
        if model.lm_head.weight is not model.shared.weight:  # a checkpoint that stored two different tensors
            raise ValueError(
                f"model {self.name!r} has tied_embeddings=true, but the loaded LM head is not the input "
                f"embedding: a T5 1.1-style checkpoint? Set model.tied_embeddings=false for it"
            )
        return model

    def _load(self) -> T5ForConditionalGeneration:
        source = str(Path(self.path).expanduser()) if self.path else self.hub_id
        try:
            config, _ = T5Config.get_config_dict(source)
            if config.get("model_type") == "mt5":  # mT5 never rescales decoder outputs, whatever its tie flag
                config["tie_word_embeddings"] = False  # says (transformers 5's MT5Config saves it as true)
            config = T5Config.from_dict(config, dropout_rate=self.dropout_rate)
            model = T5ForConditionalGeneration.from_pretrained(source, config=config)
        except (OSError, ValueError) as err:
            raise RuntimeError(
                f"could not load model weights {source!r} ({type(err).__name__}: {err}). Without Hub "
                f"access, download the checkpoint elsewhere and pass model.path=/local/dir "
                f"(a folder with config.json and model.safetensors), or use model.init=random."
            ) from err
        self._check_architecture(model.config, source)
        return model

    def _check_architecture(self, config: T5Config, source: str) -> None:
        """Refuses a checkpoint whose shape or family differs from what it is configured as."""
        for key in ("d_model", "d_ff", "d_kv", "num_layers", "num_heads", "vocab_size", "feed_forward_proj"):
            if getattr(config, key) != getattr(self, key):
                raise ValueError(
                    f"checkpoint {source!r} has {key}={getattr(config, key)}, but model "
                    f"{self.name!r} expects {getattr(self, key)}: wrong model.path for this size or family?"
                )
        if config.scale_decoder_outputs != self.tied_embeddings:  # transformers 5's trace of tie_word_embeddings
            raise ValueError(
                f"checkpoint {source!r} {'ties' if config.scale_decoder_outputs else 'unties'} its input and "
                f"output embeddings, but model {self.name!r} has tied_embeddings={self.tied_embeddings}: "
                f"an original T5 checkpoint configured as T5 1.1, or the reverse?"
            )

    def build_tokenizer(self) -> PreTrainedTokenizerBase:
        """The tokenizer: embedded offline one, a Hub id / local dir, or the weights' own."""
        source = self.tokenizer or self.path or self.hub_id
        if source == EMBEDDED_TOKENIZER:
            source = str(EMBEDDED_TOKENIZER_DIR)
        try:
            return AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError) as err:
            raise RuntimeError(
                f"could not load tokenizer {source!r} ({err}). Without Hub access pass "
                f"model.tokenizer=/local/dir (or model.path=/local/dir holding the tokenizer files)."
            ) from err

    def count_parameters(self) -> int:
        """Total parameters of this architecture, counted on the meta device (no memory)."""
        with torch.device("meta"):
            model = self._head(T5ForConditionalGeneration(self.t5_config()))
        return sum(p.numel() for p in model.parameters())  # a tied head is one parameter, counted once


def untie_lm_head(model: T5ForConditionalGeneration) -> T5ForConditionalGeneration:
    """Gives the LM head its own weight when it shares the input embedding.

    T5 1.1 (and Flan-T5, mT5) has separate input and output embeddings, but transformers 5 ties
    them in every freshly built ``T5ForConditionalGeneration`` (its ``T5Config`` forces
    ``tie_word_embeddings=True``). A loaded 1.1 checkpoint, which stores both tensors with
    different values, is left untied by ``from_pretrained``; this makes random init match.
    Never applied to the original T5, whose head is the input embedding (``ModelSpec._head``).
    """
    if model.lm_head.weight is model.shared.weight:
        model.lm_head.weight = nn.Parameter(model.shared.weight.detach().clone())
    return model
