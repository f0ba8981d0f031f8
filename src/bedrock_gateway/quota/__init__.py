"""Usage accounting: token and guardrail-unit counts read from Bedrock responses."""
