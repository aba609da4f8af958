"""conn destination plugin ``slack``: each event posted as a Slack message."""

__version__ = "0.1.0"
