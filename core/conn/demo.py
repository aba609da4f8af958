"""The demo project: a DuckDB warehouse with synthetic but realistic customers, product
events and consent records, app users and web sessions overlapping with the customers,
seeded for reproducibility, plus a conn.yml that syncs them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

FIRST = ["Anna", "Ben", "Chloé", "David", "Emma", "Felix", "Grace", "Hugo", "Ines", "Jonas",
         "Kaito", "Lena", "Mateo", "Nora", "Omar", "Paula", "Quinn", "Rosa", "Sven", "Tara",
         "Umar", "Vera", "Wen", "Xavier", "Yara", "Zoë", "Łukasz", "Søren", "José", "Aiko"]
LAST = ["Andersen", "Becker", "Costa", "Dubois", "Evans", "Fischer", "García", "Hansen",
        "Ito", "Jensen", "Kowalski", "Lopez", "Müller", "Novak", "O'Brien", "Petrov",
        "Quist", "Rossi", "Schmidt", "Tanaka", "Ueda", "Vogel", "Weber", "Xu", "Young",
        "Zimmermann"]
COUNTRIES = ["DE", "FR", "GB", "US", "NL", "ES", "IT", "SE", "PL", "JP", "BR", "CA"]
PREFIX = {"DE": "+49", "FR": "+33", "GB": "+44", "US": "+1", "NL": "+31", "ES": "+34",
          "IT": "+39", "SE": "+46", "PL": "+48", "JP": "+81", "BR": "+55", "CA": "+1"}
DOMAINS = ["example.com", "mail.example.org", "example.net", "corp.example.com"]
PLANS = ["F", "S", "P", "E"]  # free, starter, pro, enterprise (codes, mapped to labels)
EVENTS = ["login", "feature_failed", "survey_answered", "purchase", "export_created"]
PURPOSES = ["marketing", "advertising", "analytics"]


def customers(n: int, rng: np.random.Generator) -> pa.Table:
    ids = np.arange(1, n + 1)
    first = rng.integers(0, len(FIRST), n)
    last = rng.integers(0, len(LAST), n)
    country = rng.integers(0, len(COUNTRIES), n)
    fn = np.array(FIRST, dtype=object)[first]
    ln = np.array(LAST, dtype=object)[last]
    dom = np.array(DOMAINS, dtype=object)[rng.integers(0, len(DOMAINS), n)]
    # Vectorised string building through Arrow keeps generation fast at millions of rows.
    local = pc.binary_join_element_wise(pa.array(fn), pa.array(ln), pa.array(ids.astype(str)),
                                        ".")
    email = pc.binary_join_element_wise(pc.utf8_lower(local), pa.array(dom), "@")
    # Real warehouses hold messy e-mails: mixed case, stray spaces, a few invalid ones.
    messy = rng.random(n)
    email = pc.if_else(pa.array(messy < 0.05), pc.utf8_upper(email), email)
    email = pc.if_else(pa.array((messy >= 0.05) & (messy < 0.08)),
                       pc.binary_join_element_wise(pa.array(["  "] * n), email, ""), email)
    email = pc.if_else(pa.array(messy > 0.998), pc.replace_substring(email, "@", " at "), email)
    ctry = np.array(COUNTRIES, dtype=object)[country]
    phone_digits = rng.integers(100_000_000, 999_999_999, n).astype(str)
    prefixes = np.array([PREFIX[c] for c in COUNTRIES], dtype=object)[country]
    phone = pc.binary_join_element_wise(pa.array(prefixes), pa.array(phone_digits), " ")
    phone = pc.if_else(pa.array(rng.random(n) < 0.15), pa.nulls(n, pa.string()), phone)
    plan = np.array(PLANS, dtype=object)[rng.choice(4, n, p=[0.5, 0.3, 0.15, 0.05])]
    ltv = np.round(rng.gamma(2.0, 300.0, n) * (1 + (plan == "E") * 20 + (plan == "P") * 4), 2)
    health = np.clip(rng.normal(70, 18, n), 0, 100).astype(np.int32)
    signup = (np.datetime64("2019-01-01T00:00:00") +
              rng.integers(0, 6 * 365 * 86400, n).astype("timedelta64[s]"))
    updated = signup + rng.integers(0, 300 * 86400, n).astype("timedelta64[s]")
    opt_in = rng.random(n) < 0.7
    return pa.table({
        "customer_id": pa.array(ids, pa.int64()),
        "email": email,
        "first_name": pa.array(fn, pa.string()),
        "last_name": pa.array(ln, pa.string()),
        "country": pa.array(ctry, pa.string()),
        "phone": phone,
        "plan": pa.array(plan, pa.string()),
        "lifetime_value": pa.array(ltv, pa.float64()),
        "health_score": pa.array(health, pa.int32()),
        "marketing_opt_in": pa.array(opt_in),
        "signed_up_at": pa.array(signup.astype("datetime64[us]"), pa.timestamp("us", "UTC")),
        "updated_at": pa.array(updated.astype("datetime64[us]"), pa.timestamp("us", "UTC")),
    })


def consent_events(n_customers: int, rng: np.random.Generator) -> pa.Table:
    """About two events per customer and purpose mix; some later revocations."""
    rows = n_customers * 2
    subj = rng.integers(1, n_customers + 1, rows)
    purpose = np.array(PURPOSES, dtype=object)[rng.integers(0, 3, rows)]
    granted = rng.random(rows) < 0.72
    ts = (np.datetime64("2023-01-01T00:00:00") +
          rng.integers(0, 2 * 365 * 86400, rows).astype("timedelta64[s]"))
    juris = np.where(rng.random(rows) < 0.6, "EU", "US").astype(object)
    return pa.table({
        "event_id": pa.array(np.arange(1, rows + 1), pa.int64()),
        "customer_id": pa.array(subj, pa.int64()),
        "purpose": pa.array(purpose, pa.string()),
        "status": pa.array(np.where(granted, "granted", "denied").astype(object), pa.string()),
        "recorded_at": pa.array(ts.astype("datetime64[us]"), pa.timestamp("us", "UTC")),
        "jurisdiction": pa.array(juris, pa.string()),
        "legal_basis": pa.array(["consent"] * rows, pa.string()),
    })


def events(n_customers: int, rng: np.random.Generator,
           today: np.datetime64 | None = None) -> pa.Table:
    """Product events over the 50 days before ``today`` (default: the day the warehouse
    is built), so the demo's 7-day and 30-day traits have something to count."""
    rows = n_customers * 3
    kind = np.array(EVENTS, dtype=object)[rng.choice(len(EVENTS), rows,
                                                     p=[0.6, 0.08, 0.07, 0.15, 0.1])]
    end = today if today is not None else np.datetime64(dt.datetime.now(dt.UTC).date())
    ts = (end.astype("datetime64[s]") -
          rng.integers(1, 50 * 86400, rows).astype("timedelta64[s]"))
    amount = np.round(rng.gamma(2.0, 40.0, rows), 2)
    return pa.table({
        "event_id": pa.array(np.arange(1, rows + 1), pa.int64()),
        "customer_id": pa.array(rng.integers(1, n_customers + 1, rows), pa.int64()),
        "event_type": pa.array(kind, pa.string()),
        "occurred_at": pa.array(ts.astype("datetime64[us]"), pa.timestamp("us", "UTC")),
        # A survey score only on survey answers, null elsewhere.
        "score": pa.array(rng.integers(0, 11, rows).astype(np.int32), pa.int32(),
                          mask=kind != "survey_answered"),
        # What a purchase paid, null elsewhere (the demo's lifetime value trait).
        "amount": pa.array(amount, pa.float64(), mask=kind != "purchase"),
    })


#: The demo's holdout (conn.yml: syncs.customers_to_crm.holdout) and the uplift planted
#: in its outcome: renewals, 30 % of the customers the CRM receives against 24 % of those
#: held out (docs/experiments.md).
HOLDOUT_PERCENT, HOLDOUT_SALT = 10, "demo-crm-2026"
RENEWAL_RATE = {"treatment": 0.30, "holdout": 0.24}


def renewals(n_customers: int, rng: np.random.Generator) -> pa.Table:
    """One row per customer who renewed, with a planted uplift for the treatment arm of
    the demo's holdout (the arm computed as conn sync computes it)."""
    from conn.experiments.holdout import held_out

    ids = np.arange(1, n_customers + 1)
    held = held_out(pa.array(ids.astype(str)), HOLDOUT_PERCENT, HOLDOUT_SALT).to_numpy(
        zero_copy_only=False)
    # Exactly the planted share of each arm renews (drawn without replacement), so the
    # uplift over all customers is the planted one; a report over the consented members
    # (a random subset) estimates it.
    renewed = np.sort(np.concatenate([
        rng.choice(arm_ids, round(len(arm_ids) * RENEWAL_RATE[arm]), replace=False)
        for arm, arm_ids in (("holdout", ids[held]), ("treatment", ids[~held]))]))
    when = (np.datetime64("2026-11-01T00:00:00") +
            rng.integers(0, 30 * 86400, len(renewed)).astype("timedelta64[s]"))
    return pa.table({
        "renewal_id": pa.array(np.arange(1, len(renewed) + 1), pa.int64()),
        "customer_id": pa.array(renewed, pa.int64()),
        "renewed_at": pa.array(when.astype("datetime64[us]"), pa.timestamp("us", "UTC")),
    })


def app_users(crm: pa.Table, rng: np.random.Generator) -> pa.Table:
    """The app's users: 60 % of customers, signed up with the same e-mail typed their own
    way (case, spaces), on one device; 5 % more people the CRM does not know; 0.2 %
    typed the shared junk address test@test.com."""
    n = crm.num_rows
    known = np.flatnonzero(rng.random(n) < 0.6)
    strangers = max(1, n // 20)
    email = pc.utf8_trim_whitespace(crm.column("email").combine_chunks().take(known))
    email = pc.if_else(pa.array(rng.random(len(known)) < 0.3), pc.utf8_upper(email), email)
    email = pa.concat_arrays([email.cast(pa.string()), pc.binary_join_element_wise(
        "app.user", pa.array(np.arange(strangers).astype(str)), "@example.net", "")])
    total = len(known) + strangers
    email = pc.if_else(pa.array(rng.random(total) < 0.002), pa.scalar("test@test.com"), email)
    first = pa.concat_arrays([crm.column("first_name").combine_chunks().take(known),
                              pa.nulls(strangers, pa.string())])
    seen = (np.datetime64("2026-06-01T00:00:00") +
            rng.integers(0, 180 * 86400, total).astype("timedelta64[s]"))
    return pa.table({
        "user_id": pa.array(np.arange(1, total + 1), pa.int64()),
        "email": email,
        "device_id": pc.binary_join_element_wise(
            "dev-", pa.array(np.arange(1, total + 1).astype(str)), ""),
        "first_name": first,
        "country": pa.concat_arrays([crm.column("country").combine_chunks().take(known),
                                     pa.nulls(strangers, pa.string())]),
        "marketing_opt_in": pa.array(rng.random(total) < 0.6),
        "updated_at": pa.array(seen.astype("datetime64[us]"), pa.timestamp("us", "UTC")),
    })


def web_sessions(app: pa.Table, rng: np.random.Generator) -> pa.Table:
    """Anonymous web sessions: most on an app user's device, some never identified."""
    n = app.num_rows
    rows = n * 2
    device = pc.binary_join_element_wise(
        "dev-", pa.array(rng.integers(1, int(n * 1.2) + 1, rows).astype(str)), "")
    return pa.table({
        "session_id": pa.array(np.arange(1, rows + 1), pa.int64()),
        "anonymous_id": pc.binary_join_element_wise(
            "anon-", pa.array(rng.integers(1, int(rows * 0.7) + 1, rows).astype(str)), ""),
        "device_id": device,
    })


def build_warehouse(path: Path, n_customers: int = 100_000, seed: int = 42) -> dict[str, int]:
    """Create (or replace) the demo DuckDB warehouse; returns row counts per table."""
    import duckdb

    rng = np.random.default_rng(seed)
    tables = {
        "customers": customers(n_customers, rng),
        "consent_events": consent_events(n_customers, rng),
        "product_events": events(n_customers, rng),
        "renewals": renewals(n_customers, rng),
    }
    # Overlapping sources for profiles (docs/profiles.md), drawn after the others so
    # that those stay as they were for a given seed.
    tables["app_users"] = app_users(tables["customers"], rng)
    tables["web_sessions"] = web_sessions(tables["app_users"], rng)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    con = duckdb.connect(str(path))
    try:
        for name, tbl in tables.items():
            con.register("_t", tbl)
            key = {"customers": "customer_id", "renewals": "renewal_id",
                   "app_users": "user_id", "web_sessions": "session_id"}.get(name, "event_id")
            con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM _t')
            con.execute(f'ALTER TABLE "{name}" ADD PRIMARY KEY ("{key}")')
            con.unregister("_t")
    finally:
        con.close()
    return {k: v.num_rows for k, v in tables.items()}
