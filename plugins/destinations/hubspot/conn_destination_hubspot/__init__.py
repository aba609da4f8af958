"""conn destination plugin for HubSpot CRM (contacts and companies)."""

__version__ = "0.1.0"
