"""promptscale: SuperGLUE score versus T5 size for model tuning, prompt tuning and friends."""

__version__ = "0.1.0"
