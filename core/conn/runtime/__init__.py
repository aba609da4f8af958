"""The runtime: the only path from a source to a destination."""
