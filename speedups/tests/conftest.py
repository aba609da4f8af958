"""Hypothesis without a per-example deadline: shared CI machines stall for whole seconds,
and a deadline then fails tests that are correct."""

from hypothesis import settings

settings.register_profile("no-deadline", deadline=None)
settings.load_profile("no-deadline")
