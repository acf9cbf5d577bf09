"""OpenAI-compatible completion servers, as a ``Generator`` for sut/engine/external/engine.py (``--engine openai``).

Any server that speaks ``/v1/completions`` (vLLM, SGLang, TGI, llama.cpp's server) on one or many
endpoints (``--base-url`` repeated). Requests stream, so the first token's time reaches LoadGen;
prompts go as token ids, so the transcript the model reads is ours token for token, and the tokens
written come back as ids where the server returns them (vLLM's ``return_token_ids``), else as text
we tokenize. Only an attempt whose first token LoadGen times (attempt 0 in SingleStream and Server)
streams; the others are answered whole, which costs the client far less. Each request goes to the endpoint with the fewest requests outstanding (ties: the one
used least), has a deadline (``--request-timeout-s``) and is retried by the client on connection
errors a bounded number of times; a server that dies mid-run fails the tasks it held, never hangs them.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from sut.engine.external.engine import GenOut, GenRequest
from sut.model.tokenizer import CodeTokenizer
from sut.engine.external.vllm_generator import INSTALL_HINT, EngineUnavailable

log = logging.getLogger(__name__)

CONNECT_RETRIES = 2      # the client's own retries of a request that could not connect (with the client's backoff)
PROBE_TIMEOUT_S = 10.0


def served_models(base_urls: list[str], model: str = "") -> tuple[str, list[dict[str, Any]]]:
    """Ask every endpoint which models it serves (``GET /v1/models``); returns the model name to use
    (``model``, or the one model every endpoint serves) and what each endpoint said. EngineUnavailable,
    in one line with the fix, for an endpoint that does not answer or does not serve that model."""
    try:
        import openai  # noqa: PLC0415
    except ImportError:
        raise EngineUnavailable(f"--engine openai: the openai client is not installed; {INSTALL_HINT}") from None
    seen: list[dict[str, Any]] = []
    for url in base_urls:
        client = openai.OpenAI(base_url=url, api_key=os.environ.get("OPENAI_API_KEY", "EMPTY"),
                               timeout=PROBE_TIMEOUT_S, max_retries=0)
        try:
            models = [m.model_dump() for m in client.models.list().data]
        except openai.APIConnectionError:
            raise EngineUnavailable(f"--base-url {url}: nothing answers there; start the server (e.g. `python -m "
                                    "vllm.entrypoints.openai.api_server --model DIR`) or fix the URL (it ends in /v1)") from None
        except openai.APIError as e:
            raise EngineUnavailable(f"--base-url {url}: GET /models failed ({type(e).__name__}: {e}); is it an "
                                    "OpenAI-compatible server's /v1 URL?") from None
        finally:
            client.close()
        names = [m["id"] for m in models]
        if model and model not in names:
            raise EngineUnavailable(f"--model-name {model!r}: {url} serves {names}; pass one of those, or start the "
                                    "server with --served-model-name")
        if not model and len(names) != 1:
            raise EngineUnavailable(f"--base-url {url} serves {len(names)} models {names}; choose one with --model-name")
        model = model or names[0]
        seen.append({"base_url": url, "model": model, "max_model_len": next(
            (m.get("max_model_len") for m in models if m["id"] == model), None)})
    return model, seen


class OpenAIGenerator:
    """Asynchronous streaming completions over one or more endpoints; see the module docstring."""

    name = "openai"

    def __init__(self, base_urls: list[str], tokenizer: CodeTokenizer, model: str = "", timeout_s: float = 60.0) -> None:
        self.model, self.endpoints = served_models(base_urls, model)
        self.base_urls, self.tok, self.timeout_s = list(base_urls), tokenizer, timeout_s
        self._clients: list[Any] | None = None     # made on the agent loop's thread, where they are used
        self.outstanding = [0] * len(base_urls)
        self.sent = [0] * len(base_urls)
        self.errors = [0] * len(base_urls)
        self.token_ids_returned = True           # False once a server answers without ids (text re-tokenized)

    def describe(self) -> dict[str, Any]:
        import openai  # noqa: PLC0415

        return {"engine": "openai", "client": f"openai {openai.__version__}", "model": self.model,
                "endpoints": self.endpoints, "options": {"request_timeout_s": self.timeout_s,
                                                          "connect_retries": CONNECT_RETRIES,
                                                          "stream": "attempt 0 where LoadGen times the first token",
                                                          "balancing": "least outstanding requests"},
                "requests_per_endpoint": list(self.sent), "errors_per_endpoint": list(self.errors),
                "token_ids_returned": self.token_ids_returned}

    def _pick(self) -> int:
        return min(range(len(self.base_urls)), key=lambda i: (self.outstanding[i], self.sent[i], i))

    async def generate(self, prompt_ids: list[int], req: GenRequest,
                       on_first: Callable[[], None] | None = None) -> GenOut:
        import openai  # noqa: PLC0415

        if self._clients is None:
            self._clients = [openai.AsyncOpenAI(base_url=u, api_key=os.environ.get("OPENAI_API_KEY", "EMPTY"),
                                                timeout=self.timeout_s, max_retries=CONNECT_RETRIES)
                             for u in self.base_urls]
        i = self._pick()
        self.outstanding[i] += 1
        self.sent[i] += 1
        try:
            call = self._stream(i, prompt_ids, req, on_first) if on_first is not None else self._whole(i, prompt_ids, req)
            return await asyncio.wait_for(call, self.timeout_s)
        except (TimeoutError, asyncio.TimeoutError):
            self.errors[i] += 1
            raise TimeoutError(f"{self.base_urls[i]}: no complete answer within {self.timeout_s:g} s "
                               "(--request-timeout-s)") from None
        except openai.APIError as e:
            self.errors[i] += 1
            raise RuntimeError(f"{self.base_urls[i]}: {type(e).__name__}: {e}") from None
        finally:
            self.outstanding[i] -= 1

    def _body(self, req: GenRequest) -> dict[str, Any]:
        extra: dict[str, Any] = {"stop_token_ids": [req.stop_id], "return_token_ids": True, "skip_special_tokens": False}
        if req.temperature > 0 and req.top_k:
            extra["top_k"] = req.top_k
        return extra

    async def _whole(self, i: int, prompt_ids: list[int], req: GenRequest) -> GenOut:
        """One request answered whole: what an attempt that reports no first token needs (every retry, and
        every attempt in Offline). Streaming costs the client a parsed chunk per token: on 2 cores that
        parsing, not the servers, capped two endpoints at one endpoint's rate (docs/scaling.md)."""
        assert self._clients is not None
        r = await self._clients[i].completions.create(
            model=self.model, prompt=prompt_ids, max_tokens=req.max_tokens, temperature=req.temperature,
            seed=req.seed if req.temperature > 0 else None, extra_body=self._body(req))
        c = r.choices[0]
        ids = getattr(c, "token_ids", None)
        if ids is None and c.model_extra:
            ids = c.model_extra.get("token_ids")
        if ids is None:
            self.token_ids_returned = False
            ids = self.tok.encode(c.text or "")
        ids = list(ids)
        if c.finish_reason == "stop" and (not ids or ids[-1] != req.stop_id):
            ids.append(req.stop_id)
        details = getattr(r.usage, "prompt_tokens_details", None) if r.usage is not None else None
        cached = int(getattr(details, "cached_tokens", 0) or 0) if details is not None else 0
        return GenOut(ids, 0.0, cached, i)   # not streamed: no first-token time (the attempt's time is all decode)

    async def _stream(self, i: int, prompt_ids: list[int], req: GenRequest,
                      on_first: Callable[[], None] | None) -> GenOut:
        assert self._clients is not None
        t0 = time.perf_counter()
        extra = self._body(req)
        stream = await self._clients[i].completions.create(
            model=self.model, prompt=prompt_ids, max_tokens=req.max_tokens, temperature=req.temperature,
            seed=req.seed if req.temperature > 0 else None, stream=True,
            stream_options={"include_usage": True}, extra_body=extra)
        text, ids, first_s, cached, finish, got_ids = [], [], None, 0, None, True
        async for chunk in stream:
            if chunk.usage is not None:
                details = getattr(chunk.usage, "prompt_tokens_details", None)
                cached = int(getattr(details, "cached_tokens", 0) or 0) if details is not None else 0
            for c in chunk.choices:
                extra_ids = getattr(c, "token_ids", None)
                if extra_ids is None and c.model_extra:
                    extra_ids = c.model_extra.get("token_ids")
                if extra_ids is None:
                    got_ids = False
                ids += list(extra_ids or [])
                text.append(c.text or "")
                finish = c.finish_reason or finish
                if first_s is None and (extra_ids or c.text):
                    first_s = time.perf_counter() - t0
                    if on_first is not None:
                        on_first()
        if not got_ids:   # a server that returns text only: the ids are ours to recover
            self.token_ids_returned = False
            ids = self.tok.encode("".join(text))
        if finish == "stop" and (not ids or ids[-1] != req.stop_id):
            ids.append(req.stop_id)
        return GenOut(ids, first_s or (time.perf_counter() - t0), cached, i)

    async def aclose(self) -> None:
        """Close the clients on the loop that used them (called by the engine before its loop stops)."""
        for c in self._clients or []:
            await c.close()
        self._clients = None

    def close(self) -> None:
        self._clients = None
