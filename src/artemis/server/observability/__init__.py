"""What a node tells about itself: Prometheus metrics, OpenTelemetry traces, logs."""
