"""Reading, interpolating and validating ``conn.yml``."""

from conn.config.load import load_project
from conn.config.model import ConnectorConfig, Project, SyncConfig

__all__ = ["ConnectorConfig", "Project", "SyncConfig", "load_project"]
