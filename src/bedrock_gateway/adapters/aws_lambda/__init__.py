"""AWS Lambda adapters: API Gateway authorizers (and, later, the forwarder handler)."""
