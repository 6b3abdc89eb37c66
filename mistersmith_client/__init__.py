"""A client and CLI for the MisterSmith API: local stack (no auth) or API Gateway (SigV4)."""
