"""Other inference engines behind the same agent loop: vLLM in-process, OpenAI-compatible servers
(docs/engines.md)."""
