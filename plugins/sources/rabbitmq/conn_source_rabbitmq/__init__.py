"""conn source plugin for RabbitMQ queues (see README.md)."""
