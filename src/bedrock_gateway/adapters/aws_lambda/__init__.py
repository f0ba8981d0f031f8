"""AWS Lambda adapters: the function handler for API Gateway, ALB and function URL events
(``handler``, ``events``), the Python response-streaming runtime loop (``runtime``), and the
API Gateway Lambda authorizers (``authorizer``)."""
