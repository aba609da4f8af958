"""Profiles: identity resolution across sources into stable profiles (docs/profiles.md)."""
