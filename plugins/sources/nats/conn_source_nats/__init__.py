"""conn source plugin for NATS JetStream (see README.md)."""
