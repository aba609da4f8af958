"""``conn init``: a new project, or the demo project with a warehouse ready to sync."""

from __future__ import annotations

from pathlib import Path

from conn.cli import output
from conn.errors import ConfigError

EMPTY_PROJECT = """\
# conn project file. Reference: docs/architecture.md; 'conn check' validates it.
version: 1

sources: {}
  # warehouse:
  #   type: duckdb
  #   config: {path: warehouse.duckdb}

destinations: {}
  # crm:
  #   type: hubspot
  #   purposes: [marketing]
  #   config: {access_token: "${HUBSPOT_TOKEN}"}

syncs: {}
"""

DEMO_PROJECT = """\
# The conn demo: a DuckDB warehouse of synthetic customers, product events and consent
# records, synced to local files standing in for a CRM, an ad audience and a messaging tool.
#   conn sync warehouse crm          # customers who agreed to marketing -> the CRM
#   conn sync warehouse ads          # churn-risk audience, identifiers hashed
#   conn sync warehouse messaging    # product events, under the 'contract' legal basis
#   conn explain 42                  # where customer 42's data goes, and why
#   conn experiments report customers_to_crm --outcome renewals
#                                    # the CRM sync's holdout: did being sent help renewals?
#   conn profiles build              # customers, app users, web sessions -> profiles
#   conn sync profiles cdp           # one record per person, consent across identities
#   conn sync warehouse alerts       # health-score drops as events to a webhook (set
#                                    # ALERTS_URL to a receiver); the first run records
#                                    # each health, later runs send drops below 40
version: 1

sources:
  warehouse:
    type: duckdb
    config: {path: warehouse.duckdb}

consent_sources:
  consent_log:
    source: warehouse
    stream: consent_events
    subject: customer_id
    purpose: purpose
    status: status
    timestamp: recorded_at
    jurisdiction: jurisdiction

destinations:
  crm:
    type: files
    purposes: [marketing]
    config:
      path: out/crm
      format: jsonl
      objects: {contacts: {identifiers: [email]}}
  ads:
    type: files
    purposes: [advertising]
    policies: {email: hash, phone: hash, name: drop, country: allow}
    config:
      path: out/ads
      format: jsonl
      objects: {audience: {identifiers: [email]}}
  alerts:
    type: webhook
    purposes: [service]
    config:
      url: "${ALERTS_URL:-http://127.0.0.1:8787/alerts}"
      check: none
      objects: [{name: events, identifiers: [customer_id]}]
  messaging:
    type: files
    purposes: [service]
    config:
      path: out/messaging
      format: jsonl
      objects: {events: {identifiers: [event_id]}}
  cdp:
    type: files
    purposes: [marketing]
    config:
      path: out/profiles
      format: jsonl
      materialize: true
      objects: {people: {identifiers: [profile_id]}}

profiles:
  people:
    identifiers:
      customer_id: {limit: 1}
      email: {limit: 3}
      phone: {}
      device_id: {limit: 5}
      anonymous_id: {}
    edges:
      crm:
        source: warehouse
        stream: customers
        identifiers: {customer_id: customer_id, email: email, phone: phone}
        updated_at: updated_at
      app:
        source: warehouse
        stream: app_users
        identifiers: {email: email, device_id: device_id}
        updated_at: updated_at
      web:
        source: warehouse
        stream: web_sessions
        identifiers: {anonymous_id: anonymous_id, device_id: device_id}
    junk: {values: [test@test.com]}
    fields:
      first_name: {rule: source_priority, sources: [crm, app]}
      country: {rule: most_recent}
      lifetime_value: {rule: max}
      marketing_opt_in: {rule: consent}

# Computed per customer from the product events (docs/traits.md).
traits:
  lifetime_spend:
    {source: warehouse, stream: product_events, key: customer_id, aggregate: sum,
     column: amount, where: "event_type = 'purchase'"}
  failures_7d:
    {source: warehouse, stream: product_events, key: customer_id, aggregate: count,
     time: occurred_at, window: 7d, where: "event_type = 'feature_failed'"}
  days_since_login:
    {source: warehouse, stream: product_events, key: customer_id, aggregate: recency,
     time: occurred_at, where: "event_type = 'login'"}
  survey_score:
    {source: warehouse, stream: product_events, key: customer_id, aggregate: last,
     column: score, time: occurred_at, where: "event_type = 'survey_answered'"}
  health:
    sql: >-
      greatest(0, least(100, 100 - 25 * failures_7d - coalesce(days_since_login, 45)
      + 3 * coalesce(survey_score - 5, 0)))

triggers:
  health_dropped: {watch: health, below: 40, rearm: 50, cooldown: 7d}

syncs:
  customers_to_crm:
    source: warehouse
    stream: customers
    destination: crm
    object: contacts
    primary_key: customer_id
    match_key: email
    mode: mirror
    consent: {source: consent_log, subject: customer_id}
    # 10 % of the consented customers are held out of the CRM (docs/experiments.md).
    holdout: {percent: 10, salt: demo-crm-2026}
    personal: {email: email, phone: phone, first_name: name, last_name: name}
    mapping:
      email: {from: email, transforms: [trim, lower]}
      firstname: first_name
      lastname: last_name
      country: country
      plan: {from: plan, value_map: {F: Free, S: Starter, P: Pro, E: Enterprise}}
      lifetime_value: lifetime_value
      health_score: health_score
      lifetime_spend: lifetime_spend
      failures_7d: failures_7d
      days_since_login: days_since_login
      survey_score: survey_score
      health: health

  churn_risk_audience:
    source: warehouse
    query: >-
      SELECT customer_id, email, phone, country FROM customers
      WHERE health_score < 40 AND plan IN ('P', 'E')
    primary_key: customer_id
    destination: ads
    object: audience
    match_key: email
    mode: mirror
    consent: {source: consent_log, subject: customer_id}
    personal: {email: email, phone: phone}
    mapping:
      email: email
      phone: phone
      country: country

  product_events:
    source: warehouse
    stream: product_events
    destination: messaging
    object: events
    primary_key: event_id
    match_key: event_id
    mode: append
    consent:
      subject: customer_id
      legal_basis: {service: contract}
    mapping:
      event_id: event_id
      customer_id: customer_id
      event: event_type
      occurred_at: occurred_at
      score: score

  profiles_to_cdp:
    source: profiles
    stream: profiles.people
    destination: cdp
    object: people
    mode: mirror
    consent: {columns: {marketing: marketing_opt_in}}
    personal: {email: email}
    mapping:
      profile_id: profile_id
      email: email
      customer_id: customer_id
      first_name: first_name
      country: country
      lifetime_value: lifetime_value
      sources: records

  health_alerts:
    source: warehouse
    stream: customers
    primary_key: customer_id
    destination: alerts
    object: events
    mode: events
    trigger: health_dropped
    event: {name: health_dropped, time_from: trigger_at}
    consent:
      subject: customer_id
      legal_basis: {service: contract}
    mapping:
      customer_id: customer_id
      email: {from: email, transforms: [trim, lower]}
      health: health
      failures_7d: failures_7d
"""


def init_project(directory: Path, *, demo: bool, customers: int, seed: int,
                 force: bool) -> None:
    directory = directory.resolve()
    target = directory / "conn.yml"
    if target.exists() and not force:
        raise ConfigError("a project already exists here; use --force to overwrite it",
                          file=str(target))
    directory.mkdir(parents=True, exist_ok=True)
    if not demo:
        target.write_text(EMPTY_PROJECT)
        output.info(f"created {target}")
        return
    from conn.demo import build_warehouse

    counts = build_warehouse(directory / "warehouse.duckdb", customers, seed)
    target.write_text(DEMO_PROJECT)
    state = directory / ".conn"
    if force and state.exists():
        import shutil

        shutil.rmtree(state)
    output.info(f"created demo project in {directory}")
    output.table("demo warehouse (warehouse.duckdb)", ["table", "rows"],
                 [[k, v] for k, v in counts.items()])
    output.info(f"next: cd {directory} && conn sync warehouse crm")
