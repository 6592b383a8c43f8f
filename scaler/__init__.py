"""Memory-based autoscaler for the worker pool: metrics -> pure policy -> Pulumi actuator."""
