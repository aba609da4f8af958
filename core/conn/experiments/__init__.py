"""Experiments: holdout assignment (:mod:`.holdout`), the ``holdout:`` configuration
(:mod:`.spec`) and the uplift statistics of ``conn experiments report`` (:mod:`.uplift`).
See docs/experiments.md."""
