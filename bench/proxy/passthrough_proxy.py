"""Prototype for the benchmark: the tierwise proxy with router/upstream/passthrough.py, not litellm.

    python bench/proxy/passthrough_proxy.py --policy bench/proxy/bench-policy.toml --port 18704

Same Router (policy, scorer, decide, escalation plan), same headers, same uvicorn settings as
`tierwise serve`; only the upstream call differs: tiers whose model resolves to an OpenAI-protocol
target (router.upstream.passthrough.resolve_target) are called through the shared aiohttp client,
the JSON answer passed back as is and SSE events relayed byte for byte. It exists to measure what
wiring the pass-through into router/engine.py and router/serving/proxy.py buys (bench/proxy/run.py,
row "tierwise+passthrough"); the real wiring belongs to those files (see bench/PROFILE.md).
Tiers that do not resolve (anthropic/, gemini/...) would stay on litellm; this prototype answers
them with 501 since the bench policy has none.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parent))

from router.engine import Router  # noqa: E402
from router.errors import InvalidRequestError, TierwiseError, UpstreamError  # noqa: E402
from router.upstream import passthrough as pt  # noqa: E402

# Only Router.decide() and the policy are used from the engine (its other internals are being
# rewritten); body reading, headers and errors are done here the way router/serving/proxy.py
# does them.


def error_response(exc: TierwiseError) -> JSONResponse:
    return JSONResponse(exc.to_openai(), status_code=exc.status_code)


async def read_json_body(request: Request) -> dict:
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequestError("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("request body must be a JSON object")
    return body


def routing_headers(decision, tier, escalations: list[str]) -> dict[str, str]:  # type: ignore
    return {"x-tierwise-tier": tier.name, "x-tierwise-model": tier.model,
            "x-tierwise-difficulty": f"{decision.difficulty:.4f}",
            "x-tierwise-escalated": ",".join(escalations) if escalations else "no",
            "x-tierwise-coalesced": "no"}


def plan_of(router: Router, decision) -> list[str]:  # type: ignore[no-untyped-def]
    budget = router.policy.max_escalations - len(decision.escalations)
    return [decision.tier, *decision.fallbacks[:max(budget, 0)]]


def _scorer():  # type: ignore[no-untyped-def]
    from tierwise_serve import StandInScorer, scorer_available

    why = scorer_available()
    if why is not None:
        print(f"tierwise-bench: stand-in scorer (classifiers.default_scorer: {why})",
              file=sys.stderr, flush=True)
        return StandInScorer()
    from classifiers import default_scorer

    return default_scorer()


class PassthroughProxy:
    def __init__(self, policy: str | None) -> None:
        self.router = Router(policy, scorer=_scorer())
        self.policy = self.router.policy

    def _target(self, tier) -> tuple[pt.Target, str | None]:  # type: ignore[no-untyped-def]
        api_base = tier.api_base
        if api_base == "builtin":
            from router.upstream.simulator import builtin_base_url

            api_base = builtin_base_url()
        target = pt.resolve_target(tier.model, api_base)
        if target is None:
            raise TierwiseError(f"tier {tier.name} is not OpenAI-protocol; litellm path not in "
                                "this prototype")
        key = os.environ.get(tier.api_key_env) if tier.api_key_env else None
        return target, key

    async def chat_completions(self, request: Request) -> Response:
        try:
            body = await read_json_body(request)
            decision = self.router.decide(body)
            plan = plan_of(self.router, decision)
        except TierwiseError as exc:
            return error_response(exc)
        payload = {k: v for k, v in body.items() if k != "model"}
        stream = bool(body.get("stream"))
        escalations = list(decision.escalations)
        for i, name in enumerate(plan):
            tier = self.policy.tier(name)
            assert tier is not None
            try:
                target, key = self._target(tier)
                timeout = tier.timeout_s or self.policy.timeout_s
                if stream:
                    s = await pt.open_chat_stream(target.base_url, key, payload, timeout,
                                                  model=target.model)
                    headers = routing_headers(decision, tier, escalations)
                    return StreamingResponse(_relay(s), media_type="text/event-stream",
                                             headers=headers)
                data = await pt.chat_completion(target.base_url, key, payload, timeout,
                                                model=target.model)
            except TierwiseError as exc:
                return error_response(exc)
            except pt.PassthroughError as exc:
                retryable, status, reason = pt.classify(exc)
                if not retryable or i + 1 >= len(plan):
                    return error_response(UpstreamError(
                        f"upstream call failed: {exc.message}", status_code=status,
                        attempts=[*escalations, f"{reason}:{name}"]))
                escalations.append(f"{reason}:{name}->{plan[i + 1]}")
                continue
            headers = routing_headers(decision, tier, escalations)
            return JSONResponse(data, headers=headers)
        return error_response(UpstreamError("no tier answered", attempts=escalations))

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "policy": self.policy.name})


async def _relay(stream: pt.ChatStream) -> AsyncIterator[bytes]:
    try:
        # one write per upstream read, not per event: fewer syscalls and client wake-ups
        async for batch in stream.batches():
            yield batch
    except pt.StreamInterrupted:
        err = {"error": {"message": "upstream stream failed", "type": "upstream_error"}}
        yield f"data: {json.dumps(err)}\n\n".encode()
        yield b"data: [DONE]\n\n"
    finally:
        await stream.close()


def create_app(policy: str | None) -> Starlette:
    proxy = PassthroughProxy(policy)
    return Starlette(routes=[
        Route("/v1/chat/completions", proxy.chat_completions, methods=["POST"]),
        Route("/healthz", proxy.healthz, methods=["GET"]),
    ], lifespan=_lifespan)


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    await pt.close_default_client()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18704)
    args = ap.parse_args()
    uvicorn.run(create_app(args.policy), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
