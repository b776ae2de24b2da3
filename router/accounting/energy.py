"""Energy (kWh) and CO2e (g) per LLM call, and carbon-aware deployment choice, via ecologits.

ecologits (offline; ~0.14 ms a call here, see `_impacts`) models a request's energy from the
model's (active) parameter count, the output tokens and the latency, and turns it into CO2e
with the electricity mix of a zone (ISO 3166-1 alpha-3 code such as ``"FRA"``, ``"USA"``, or
``"WOR"`` for the world mix). Its results are ranges; we report the midpoint. CO2e is
ecologits' total GWP: usage (electricity) plus the embodied share of the hardware.

litellm model strings are mapped to ecologits' (provider, name): ``"anthropic/claude-..."``,
``"gemini/..."`` -> ``google_genai``, ``"mistral/..."`` -> ``mistralai``, bare ``"gpt-4o"`` ->
``openai``, ``"huggingface/org/model"`` -> ``huggingface_hub``. Unknown models give
``(None, None)``; nothing here raises on unknown input.

ecologits is imported lazily on first use (~0.4 s), never at import of this module.
"""

from __future__ import annotations

import logging
import math
from functools import lru_cache
from typing import Any

_PREFIX_PROVIDER = {
    "openai": "openai",
    "azure": "openai",
    "text-completion-openai": "openai",
    "anthropic": "anthropic",
    "mistral": "mistralai",
    "mistralai": "mistralai",
    "gemini": "google_genai",
    "vertex_ai": "google_genai",
    "google_genai": "google_genai",
    "cohere": "cohere",
    "cohere_chat": "cohere",
    "huggingface": "huggingface_hub",
    "huggingface_hub": "huggingface_hub",
}
_NAME_PROVIDER = (
    (("gpt-", "o1", "o3", "o4", "chatgpt", "text-davinci"), "openai"),
    (("claude",), "anthropic"),
    (("mistral", "ministral", "codestral", "magistral", "pixtral", "devstral"), "mistralai"),
    (("gemini", "gemma"), "google_genai"),
    (("command", "c4ai"), "cohere"),
)
_PROVIDERS = ("openai", "anthropic", "mistralai", "google_genai", "cohere", "huggingface_hub")


@lru_cache(maxsize=1)
def _eco() -> Any:
    from ecologits import electricity_mix_repository, model_repository
    from ecologits.impacts import llm
    from ecologits.tracers import utils

    # after the import: ecologits installs its own Logger class; it warns once per model otherwise
    logging.getLogger("ecologits").setLevel(logging.ERROR)
    _cache_dag_order(llm.dag)
    return utils, model_repository.models, electricity_mix_repository.electricity_mixes


def _cache_dag_order(dag: Any) -> None:
    """ecologits (0.11) re-sorts its computation graph topologically on every estimate: ~60% of
    its ~0.45 ms. The graph is fixed once imported, so sort it once and run the same steps in
    the same order (tests/test_accounting_policy.py checks the results are identical). Left
    alone if ecologits' DAG no longer looks like the one this was written for."""
    tasks = getattr(dag, "_DAG__tasks", None)
    deps = getattr(dag, "_DAG__dependencies", None)
    if not isinstance(tasks, dict) or not isinstance(deps, dict) or not callable(
            getattr(dag, "build_dag", None)):
        return
    order = tuple(dag.build_dag().static_order())
    steps = [(name, tasks[name], tuple(deps[name])) for name in order if name in tasks]

    def execute(**kwargs: Any) -> dict[str, Any]:
        results = kwargs.copy()
        for name, task, needs in steps:
            if name in results:
                continue
            args = {dep: results.get(dep) for dep in needs}
            results[name] = task(**{k: v for k, v in args.items() if v is not None})
        return results

    dag.execute = execute


@lru_cache(maxsize=1024)
def resolve_model(model: str, provider: str | None = None) -> tuple[str, str] | None:
    """ecologits' (provider, model name) for a litellm model string, or None if unknown."""
    _, models, _ = _eco()
    name = model
    candidates: list[str] = []
    if provider:
        candidates.append(_PREFIX_PROVIDER.get(provider, provider))
    head, sep, rest = model.partition("/")
    if sep and head in _PREFIX_PROVIDER:
        candidates.append(_PREFIX_PROVIDER[head])
        name = rest
    low = name.lower()
    for prefixes, prov in _NAME_PROVIDER:
        if low.startswith(prefixes):
            candidates.append(prov)
    candidates += [p for p in _PROVIDERS if p not in candidates]
    names = [name]
    if sep and head not in _PREFIX_PROVIDER:  # e.g. "hosted_vllm/meta-llama/Meta-Llama-3-8B"
        names.append(rest)
    names.append(name.rsplit("/", 1)[-1])
    for prov in candidates:
        for n in names:
            if models.find_model(prov, n) is not None:
                return prov, n
    return None


def _mid(v: Any) -> float:
    if hasattr(v, "min") and hasattr(v, "max"):
        return (float(v.min) + float(v.max)) / 2
    return float(v)


def estimate_energy(
    model: str,
    provider: str | None,
    completion_tokens: int,
    latency_s: float,
    zone: str | None,
) -> tuple[float | None, float | None]:
    """(kWh, gCO2e) of one call, midpoints of ecologits' ranges; (None, None) if unknown.

    ``zone``: ecologits electricity-mix code (None: the provider's datacenter default).
    Never raises.
    """
    try:
        key = resolve_model(model, provider)
        if key is None:
            return None, None
        setup = _setup(key[0], key[1], zone)
        if setup is None:
            return None, None
        energy, gwp = _impacts(setup, max(0, int(completion_tokens)), max(float(latency_s), 1e-3))
        kwh, co2e_g = _mid(energy), _mid(gwp) * 1000.0
        if not (math.isfinite(kwh) and math.isfinite(co2e_g)):
            return None, None
        return kwh, co2e_g
    except Exception:  # estimation must never break a request
        return None, None


# What ecologits' llm_impacts() looks up for a (provider, model, zone) before computing: the
# model's (active, total) parameter counts (both ends of a range), the datacenter's PUE/WUE,
# the electricity mix and the deployment's tps/ttft. None: ecologits would report an error.
_Setup = tuple[list[Any], list[Any], Any, Any, Any, Any, Any]


@lru_cache(maxsize=1024)
def _setup(provider: str, model_name: str, zone: str | None) -> _Setup | None:
    from ecologits.model_repository import ParametersMoE
    from ecologits.tracers.utils import PROVIDER_CONFIG_MAP
    from ecologits.utils.range_value import RangeValue

    _, models, mixes = _eco()
    found = models.find_model(provider=provider, model_name=model_name)
    if found is None:
        return None
    params = found.architecture.parameters
    if isinstance(params, ParametersMoE):
        total, active = params.total, params.active
    else:
        total = active = params
    config = PROVIDER_CONFIG_MAP[provider]
    mix = mixes.find_electricity_mix(zone=zone or config.datacenter_location or "WOR")
    if mix is None:
        return None
    # as compute_llm_impacts: a range of parameters is computed at both ends
    actives, totals = [active], [total]
    if isinstance(active, RangeValue) or isinstance(total, RangeValue):
        actives = [active.min, active.max] if isinstance(active, RangeValue) else [active, active]
        totals = [total.min, total.max] if isinstance(total, RangeValue) else [total, total]
    deployment = found.deployment
    return (actives, totals, mix, config.datacenter_pue, config.datacenter_wue,
            deployment.tps if deployment else None, deployment.ttft if deployment else None)


_FIELDS = ("request_energy", "request_usage_gwp", "request_embodied_gwp")


def _impacts(setup: _Setup, tokens: int, latency_s: float) -> tuple[Any, Any]:
    """(energy kWh, GWP kgCO2e) as ecologits' llm_impacts() computes them (same DAG, same
    min/max combination), without building its pydantic result objects: those were ~80% of
    its ~0.45 ms per call. tests/test_accounting_policy.py checks both give identical values."""
    from ecologits.impacts.llm import compute_llm_impacts_dag
    from ecologits.utils.range_value import RangeValue

    actives, totals, mix, pue, wue, tps, ttft = setup
    results: dict[str, Any] = {}
    for active, total in zip(actives, totals, strict=True):
        res = compute_llm_impacts_dag(
            model_active_parameter_count=active, model_total_parameter_count=total,
            output_token_count=tokens, request_latency=latency_s,
            if_electricity_mix_adpe=mix.adpe, if_electricity_mix_pe=mix.pe,
            if_electricity_mix_gwp=mix.gwp, if_electricity_mix_wue=mix.wue,
            datacenter_pue=pue, datacenter_wue=wue, tps=tps, ttft=ttft)
        for name in _FIELDS:
            if name in results:
                low, high = results[name], res[name]
                low = low.min if isinstance(low, RangeValue) else low
                high = high.max if isinstance(high, RangeValue) else high
                results[name] = RangeValue(min=low, max=high)
            else:
                results[name] = res[name]
    return results["request_energy"], results["request_usage_gwp"] + results["request_embodied_gwp"]


def zone_intensity(zone: str | None) -> float | None:
    """Carbon intensity of a zone's electricity mix in gCO2e/kWh (ecologits data), or None."""
    if not zone:
        return None
    try:
        mix = _eco()[2].find_electricity_mix(zone=zone.upper())
    except Exception:
        return None
    return None if mix is None else float(mix.gwp) * 1000.0


def carbon_intensity(
    name: str, zone: str | None, overrides: dict[str, float] | None = None
) -> float:
    """gCO2e/kWh of a deployment: ``overrides`` by name, then by zone, then ecologits' zone
    data; ``math.inf`` when unknown (ranks last)."""
    overrides = overrides or {}
    if name in overrides:
        return float(overrides[name])
    if zone and zone in overrides:
        return float(overrides[zone])
    v = zone_intensity(zone)
    return math.inf if v is None else v


def rank_greenest(
    deployments: list[tuple[str, str | None]],
    healthy: set[str],
    overrides: dict[str, float] | None = None,
) -> list[str]:
    """Deployment names in the order to try: healthy ones by carbon intensity, then the rest
    by carbon intensity (health may be stale). Ties keep policy order."""
    def key(item: tuple[int, tuple[str, str | None]]) -> tuple[bool, float, int]:
        i, (name, zone) = item
        return name not in healthy, carbon_intensity(name, zone, overrides), i

    return [d[0] for _, d in sorted(enumerate(deployments), key=key)]


def pick_greenest(
    deployments: list[tuple[str, str | None]],
    healthy: set[str],
    overrides: dict[str, float] | None = None,
) -> str:
    """Name of the healthy deployment with the lowest carbon intensity.

    ``deployments``: (name, zone) in policy order. ``overrides``: gCO2e/kWh keyed by deployment
    name or by zone (the policy's static values; a name wins over a zone), else ecologits' zone
    data. Unknown intensity ranks last; ties keep policy order. If no deployment is healthy, the
    greenest of all is returned (health may be stale; the caller's failover still applies).
    Raises ValueError on an empty list.
    """
    if not deployments:
        raise ValueError("pick_greenest: no deployments")
    return rank_greenest(deployments, healthy, overrides)[0]
