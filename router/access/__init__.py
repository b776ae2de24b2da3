"""Who may call the proxy and how much: API keys, budgets and rate limits, the response cache."""
