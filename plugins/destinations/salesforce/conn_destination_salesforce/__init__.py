"""conn destination plugin for Salesforce (any sObject, upsert by external id)."""

__version__ = "0.1.0"
