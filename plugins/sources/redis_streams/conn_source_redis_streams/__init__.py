"""conn source plugin for Redis Streams (see README.md)."""
