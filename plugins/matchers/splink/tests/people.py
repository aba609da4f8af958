"""A small synthetic population with planted duplicates (typos in names and
addresses), shared by the plugin's tests."""

from __future__ import annotations

import random

FIRST = ["Alice", "Bruno", "Chloe", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ingrid",
         "Jonas", "Keiko", "Lars", "Mirela", "Nadia", "Oskar", "Priya", "Quentin", "Rosa",
         "Stefan", "Tamsin"]
LAST = ["Abbott", "Brennan", "Castillo", "Dimitrov", "Eriksen", "Fontaine", "Gallagher",
        "Hoffmann", "Ivanova", "Jablonski", "Kowalczyk", "Lindqvist", "Moreau", "Novak"]
STREETS = ["Elm Street", "Harbour Road", "Mill Lane", "Station Avenue", "Queens Drive",
           "Orchard Close", "Church Walk", "Bridge Street"]
CITIES = ["Leeds", "Bristol", "York"]


def typo(s: str, rng: random.Random) -> str:
    """One edit: a swapped, dropped or doubled letter (not the first: people rarely
    mistype it, and blocking on a name's first letter relies on that)."""
    i = rng.randrange(1, len(s) - 1)
    op = rng.choice(["swap", "drop", "double"])
    if op == "swap":
        return s[:i] + s[i + 1] + s[i] + s[i + 2:]
    if op == "drop":
        return s[:i] + s[i + 1:]
    return s[:i] + s[i] + s[i:]


def population(n: int = 60, dupes: int = 12,
               seed: int = 7) -> tuple[list[dict], list[tuple[int, int]]]:
    """``n`` distinct people (unique name and address) and ``dupes`` of them again with
    a typo in the name or the address; returns the rows (``uid`` 0..) and the planted
    pairs of uids."""
    rng = random.Random(seed)
    names = rng.sample([(f, la) for f in FIRST for la in LAST], n)
    rows = []
    for uid, (first, last) in enumerate(names):
        rows.append({"uid": uid, "name": f"{first} {last}",
                     "address": f"{rng.randint(1, 199)} {rng.choice(STREETS)}",
                     "city": rng.choice(CITIES)})
    planted = []
    for k, src in enumerate(rng.sample(range(n), dupes)):
        row = dict(rows[src], uid=n + k)
        if k % 2:
            row["name"] = typo(row["name"], rng)
        else:
            row["address"] = typo(row["address"], rng)
        rows.append(row)
        planted.append((src, n + k))
    return rows, planted
