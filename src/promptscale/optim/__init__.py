"""Optimizers and learning-rate schedules of the recipes (filled in by the recipe redesign)."""
