"""The model: config, forward and KV cache, tokenizer, transcript layout, checkpoint I/O
(docs/model.md)."""
