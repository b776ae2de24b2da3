"""Per-request efficiency accounting: cost, always-largest baseline, savings, energy and CO2e.

The engine calls :func:`build_record` once per request; the result (:class:`RequestRecord`) goes
to the ledger (:mod:`router.accounting.ledger`), the Prometheus metrics
(:mod:`router.accounting.metrics`) and the response headers. :func:`summarize` turns a list of
records into the totals shown by ``tierwise report`` and ``/dashboard``.

Prices come from litellm's model map (``litellm.cost_per_token``) unless the policy sets
``input_per_mtok``/``output_per_mtok`` on the tier. litellm is imported lazily, on the first
priced call, so importing this module stays cheap for ``route()``.

Baseline: the cost the always-largest tier would have had *for the same token counts*. The
largest model may well have written a different number of tokens; counting the same tokens is the
usual convention (RouteLLM, Martian) and keeps the comparison free of guesses.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

log = logging.getLogger("tierwise.accounting")

OUTCOMES = ("ok", "upstream_error", "client_error", "cancelled")


class UnknownPriceError(LookupError):
    """litellm has no price for a model and the policy gave none."""

    def __init__(self, model: str, detail: str = "") -> None:
        self.model = model
        msg = (
            f"no price known for model {model!r} (litellm's model map does not list it); "
            "set input_per_mtok/output_per_mtok (USD per 1M tokens) on the tier in the policy"
        )
        super().__init__(msg + (f" [{detail}]" if detail else ""))


@dataclass(frozen=True)
class Prices:
    """Per-tier price override from the policy, in USD per 1M tokens."""

    input_per_mtok: float
    output_per_mtok: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return token_cost(prompt_tokens, completion_tokens, self.input_per_mtok,
                          self.output_per_mtok)


def token_cost(prompt_tokens: int, completion_tokens: int, input_per_mtok: float,
               output_per_mtok: float) -> float:
    """USD for the tokens at per-1M-token prices (the one formula: `Prices.cost` and the
    request path's router.routing.price both use it, so headers and ledger agree)."""
    return (prompt_tokens * input_per_mtok + completion_tokens * output_per_mtok) / 1e6


# More tokens than any model reads or writes in one call: a count above it is a provider bug
# (or an attack on the books), not usage.
MAX_USAGE_TOKENS = 100_000_000
_USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")


def clean_usage(usage: Any) -> dict[str, Any] | None:
    """An upstream's ``usage`` object checked before anything is charged from it: the token
    counts as ints, or None when it is not usable (not an object, a count that is not a whole
    number in [0, MAX_USAGE_TOKENS]: a string, NaN, 1e30...), so the caller estimates instead.
    Logged when dropped: the provider sent something wrong and the charge is an estimate."""
    if usage is None:
        return None
    if isinstance(usage, dict):
        counts: dict[str, int] = {}
        for name in _USAGE_FIELDS:
            value = usage.get(name, 0)
            if value is None:
                value = 0
            if isinstance(value, bool) or not isinstance(value, int | float) or not (
                    math.isfinite(value) and value == int(value)
                    and 0 <= value <= MAX_USAGE_TOKENS):
                break
            counts[name] = int(value)
        else:
            if usage.get("total_tokens") is None:
                counts["total_tokens"] = counts["prompt_tokens"] + counts["completion_tokens"]
            return {**usage, **counts}
    log.warning("malformed usage from the upstream ignored (estimated instead): %.200r", usage)
    return None


def estimate_usage(prompt_tokens: int, answer_chars: int) -> dict[str, Any]:
    """A usage for an answer the upstream did not (validly) count: the prompt's tokens as the
    scorer counted them and ~4 characters per token of the answer text that went out."""
    prompt = max(int(prompt_tokens), 0)
    completion = max(1, -(-int(answer_chars) // 4)) if answer_chars > 0 else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion, "estimated": True}


_litellm: Any = None


def _get_litellm() -> Any:
    """Import litellm once, offline (local price map), without its debug chatter."""
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        litellm.suppress_debug_info = True
        _litellm = litellm
    return _litellm


def call_cost(
    model: str, prompt_tokens: int, completion_tokens: int, prices: Prices | None = None
) -> float:
    """USD cost of one call: ``prices`` if given, else litellm's ``cost_per_token``.

    Raises :class:`UnknownPriceError` (naming the model and the fix) when litellm does not know
    the model and no override is given.
    """
    if prices is not None:
        return prices.cost(prompt_tokens, completion_tokens)
    litellm = _get_litellm()
    try:
        p, c = litellm.cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except Exception as e:  # litellm raises BadRequestError, ModelNotMappedError, ...
        raise UnknownPriceError(model, type(e).__name__) from None
    return float(p) + float(c)


@dataclass
class RequestRecord:
    """One row per request (the ledger schema). Times in ms, ``ts`` in unix seconds.

    ``escalations`` lists steps as ``"reason:from->to"``, e.g. ``"low_confidence:small->medium"``;
    ``escalated`` is derived from it. ``energy_kwh``/``co2e_g`` are None when ecologits does not
    know the model. ``prompt_text`` is only kept when the policy turns prompt storage on.
    """

    request_id: str
    ts: float
    tier: str
    model: str
    deployment: str | None
    api_base_host: str | None
    escalations: list[str]
    escalated: bool = field(init=False)
    coalesced: bool
    cache_hit: bool
    stream: bool
    status: int
    outcome: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    baseline_model: str
    baseline_cost_usd: float
    saved_usd: float
    energy_kwh: float | None
    co2e_g: float | None
    zone: str | None
    decision_ms: float
    ttft_ms: float | None
    latency_ms: float
    difficulty: float | None
    api_key_id: str | None = None
    prompt_text: str | None = None

    def __post_init__(self) -> None:
        self.escalations = list(self.escalations)
        self.escalated = bool(self.escalations)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RequestRecord:
        names = {f.name for f in fields(cls) if f.init}
        return cls(**{k: v for k, v in d.items() if k in names})

    def headers(self) -> dict[str, str]:
        """The cost headers (contract names). The engine's ``Routing.headers()`` owns the
        tier/model/difficulty/escalated/coalesced ones."""
        return {
            "x-tierwise-cost-usd": f"{self.cost_usd:.8f}",
            "x-tierwise-saved-usd": f"{self.saved_usd:.8f}",
        }


def build_record(
    *,
    request_id: str,
    tier: str,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    baseline_model: str,
    latency_ms: float,
    prices: Prices | None = None,
    baseline_prices: Prices | None = None,
    prior_cost_usd: float = 0.0,
    ts: float | None = None,
    deployment: str | None = None,
    api_base_host: str | None = None,
    provider: str | None = None,
    zone: str | None = None,
    escalations: Sequence[str] = (),
    coalesced: bool = False,
    cache_hit: bool = False,
    stream: bool = False,
    status: int = 200,
    outcome: str = "ok",
    decision_ms: float = 0.0,
    ttft_ms: float | None = None,
    difficulty: float | None = None,
    api_key_id: str | None = None,
    prompt_text: str | None = None,
    with_energy: bool = True,
) -> RequestRecord:
    """Build the record for one finished request.

    ``baseline_model``/``baseline_prices`` are the largest (last) tier's; its cost is computed for
    the same tokens. A coalesced follower or a cache hit made no upstream call: it costs 0, uses
    no energy and saves the whole baseline. ``prior_cost_usd`` is what earlier, billed attempts on
    lower tiers cost (e.g. an answer that failed the response check); it is added to ``cost_usd``
    so savings are not overstated. ``zone`` is the ecologits electricity-mix code of the
    deployment (None: the provider's default). Raises :class:`UnknownPriceError` for unpriced
    models.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
    free = coalesced or cache_hit
    baseline = call_cost(baseline_model, prompt_tokens, completion_tokens, baseline_prices)
    cost = 0.0 if free else call_cost(model, prompt_tokens, completion_tokens, prices)
    cost += prior_cost_usd
    energy: float | None = None
    co2e: float | None = None
    if free:
        energy, co2e = 0.0, 0.0
    elif with_energy:
        from router.accounting.energy import estimate_energy

        energy, co2e = estimate_energy(model, provider, completion_tokens, latency_ms / 1000, zone)
    return RequestRecord(
        request_id=request_id,
        ts=time.time() if ts is None else ts,
        tier=tier,
        model=model,
        deployment=deployment,
        api_base_host=api_base_host,
        escalations=list(escalations),
        coalesced=coalesced,
        cache_hit=cache_hit,
        stream=stream,
        status=status,
        outcome=outcome,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost_usd=cost,
        baseline_model=baseline_model,
        baseline_cost_usd=baseline,
        saved_usd=baseline - cost,
        energy_kwh=energy,
        co2e_g=co2e,
        zone=zone,
        decision_ms=decision_ms,
        ttft_ms=ttft_ms,
        latency_ms=latency_ms,
        difficulty=difficulty,
        api_key_id=api_key_id,
        prompt_text=prompt_text,
    )


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in [0, 1]) of unsorted values; None when empty."""
    if not values:
        return None
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s)) - 1)]


def _rate(n: float, total: float) -> float:
    return n / total if total else 0.0


def summarize(records: Iterable[RequestRecord]) -> dict[str, Any]:
    """Totals used by the report and the dashboard (same keys as ``Ledger.summary``).

    Keys: requests, by_tier, by_outcome, by_deployment, escalations_by_reason, prompt_tokens,
    completion_tokens, cost_usd, baseline_cost_usd, saved_usd, saved_pct, energy_kwh, co2e_g,
    co2e_g_per_1k_tokens, tokens_per_s, latency_ms_p50/p99, ttft_ms_p50/p99, decision_ms_p50/p99,
    escalated, escalation_rate, coalesced, coalesced_rate, cache_hits, cache_hit_rate,
    first_ts, last_ts.
    """
    recs = list(records)
    n = len(recs)
    out: dict[str, Any] = {"requests": n}
    groups = (("by_tier", "tier"), ("by_outcome", "outcome"), ("by_deployment", "deployment"))
    for key, attr in groups:
        counts: dict[str, int] = {}
        for r in recs:
            k = getattr(r, attr)
            if k is not None:  # requests without a named deployment are not counted there
                counts[k] = counts.get(k, 0) + 1
        out[key] = dict(sorted(counts.items()))
    reasons: dict[str, int] = {}
    for r in recs:
        for step in r.escalations:
            reason = step.split(":", 1)[0]
            reasons[reason] = reasons.get(reason, 0) + 1
    out["escalations_by_reason"] = dict(sorted(reasons.items()))
    for k in ("prompt_tokens", "completion_tokens"):
        out[k] = sum(getattr(r, k) for r in recs)
    for k in ("cost_usd", "baseline_cost_usd", "saved_usd"):
        out[k] = sum(getattr(r, k) for r in recs)
    out["saved_pct"] = 100 * _rate(out["saved_usd"], out["baseline_cost_usd"])
    known = [r for r in recs if r.co2e_g is not None]
    out["energy_kwh"] = sum(r.energy_kwh or 0.0 for r in recs)
    out["co2e_g"] = sum(r.co2e_g or 0.0 for r in known)
    ktok = sum(r.prompt_tokens + r.completion_tokens for r in known) / 1000
    out["co2e_g_per_1k_tokens"] = out["co2e_g"] / ktok if ktok else None
    served = [r for r in recs if not (r.coalesced or r.cache_hit) and r.outcome == "ok"]
    busy_s = sum(r.latency_ms for r in served) / 1000
    out["tokens_per_s"] = sum(r.completion_tokens for r in served) / busy_s if busy_s else None
    for name in ("latency_ms", "ttft_ms", "decision_ms"):
        vals = [v for r in recs if (v := getattr(r, name)) is not None]
        out[f"{name}_p50"] = percentile(vals, 0.50)
        out[f"{name}_p99"] = percentile(vals, 0.99)
    for key, rate_key, attr in (
        ("escalated", "escalation_rate", "escalated"),
        ("coalesced", "coalesced_rate", "coalesced"),
        ("cache_hits", "cache_hit_rate", "cache_hit"),
    ):
        out[key] = sum(1 for r in recs if getattr(r, attr))
        out[rate_key] = _rate(out[key], n)
    out["first_ts"] = min((r.ts for r in recs), default=None)
    out["last_ts"] = max((r.ts for r in recs), default=None)
    return out
