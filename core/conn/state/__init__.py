"""Acknowledged state: what each sync's destination confirmed, the change planner that
diffs a run against it, and the backends that store it."""
