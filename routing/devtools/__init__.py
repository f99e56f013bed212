"""Development tools: the fake OpenAI-compatible upstream and the traffic generator."""
