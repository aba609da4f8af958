"""Traits, audiences and triggers: computed columns per key and events on their
transitions, applied before the consent gate (docs/traits.md)."""
