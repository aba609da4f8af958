"""conn destination plugin ``mailchimp``: Mailchimp audience (list) members."""

__version__ = "0.1.0"
