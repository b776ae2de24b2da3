"""Several deployments inside one tier, balanced by litellm.Router.

A tier that lists `deployments` (the same model on several endpoints or keys) is served by one
`litellm.Router` whose single model group is the tier's name. litellm already does load
balancing, retries across deployments and cooldowns of failing ones; tierwise only configures it
and escalates to the next tier when the whole group fails. A tier with one endpoint does not use
this (a direct `litellm.acompletion` costs ~1.5 ms less CPU per call).

With the policy's `carbon_aware = true`, tierwise picks the deployment itself instead
(`GreenPicker`): the healthy deployment whose zone has the lowest carbon intensity first (the
policy's `zone_intensity` values, else ecologits' zone data), the next greenest when it fails.
A deployment rests `cooldown_s` after a retryable failure. litellm.Router has no hook to order
deployments by a static cost per request, hence this small loop rather than a custom strategy.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

from policies import Deployment, Policy, Tier
from router.accounting.energy import rank_greenest
from router.upstream.calls import classify_failure, endpoint_arguments, litellm_module


def model_list(tier: Tier, policy: Policy) -> list[dict[str, Any]]:
    """litellm.Router's model_list for `tier`: one entry per deployment, all named after it."""
    timeout = tier.timeout_s or policy.timeout_s
    entries = []
    for deployment in tier.deployments:
        params = endpoint_arguments(deployment.model, deployment.api_base,
                                    deployment.api_key_env, tier.name)
        # litellm.Router retries across deployments itself; the OpenAI SDK's own retries
        # underneath would multiply every failure by three.
        params.update(timeout=timeout, max_retries=0)
        if deployment.weight is not None:
            params["weight"] = deployment.weight
        if deployment.rpm is not None:
            params["rpm"] = deployment.rpm
        entries.append({"model_name": tier.name, "litellm_params": params,
                        "model_info": {"id": deployment.name}})
    return entries


def build_router(tier: Tier, policy: Policy) -> Any:
    """A litellm.Router serving `tier` from its deployments."""
    litellm = litellm_module()
    return litellm.Router(
        model_list=model_list(tier, policy),
        num_retries=tier.retries,
        # A deployment rests after its first failure: the others carry the load meanwhile.
        allowed_fails=0,
        cooldown_time=tier.cooldown_s,
        timeout=tier.timeout_s or policy.timeout_s,
        retry_after=0,
    )


class GreenPicker:
    """The order in which to try a tier's deployments (carbon_aware), and their health."""

    def __init__(self, tier: Tier, policy: Policy) -> None:
        self.tier = tier
        self.overrides = policy.zone_intensity
        self._resting: dict[str, float] = {}  # deployment name -> monotonic time it may return
        # One single-endpoint tier per deployment, so the ordinary call paths serve it.
        self.endpoints = {d.name: dataclasses.replace(
            tier, name=f"{tier.name}@{d.name}", model=d.model, api_base=d.api_base,
            api_key_env=d.api_key_env, zone=d.zone, deployments=()) for d in tier.deployments}

    def order(self) -> list[Deployment]:
        """Deployments to try, greenest healthy first; at most `retries + 1` of them."""
        now = time.monotonic()
        healthy = {d.name for d in self.tier.deployments if self._resting.get(d.name, 0) <= now}
        names = rank_greenest([(d.name, d.zone) for d in self.tier.deployments], healthy,
                              self.overrides)
        by_name = {d.name: d for d in self.tier.deployments}
        return [by_name[n] for n in names[:self.tier.retries + 1]]

    def failed(self, deployment: Deployment) -> None:
        self._resting[deployment.name] = time.monotonic() + self.tier.cooldown_s

    async def call(self, call: Callable[[Tier], Awaitable[Any]],
                   served: dict[str, Any] | None) -> Any:
        """`call(endpoint tier)` on the greenest healthy deployment, the next one on a
        retryable failure; `served` gets the deployment and zone that answered."""
        order = self.order()
        for i, deployment in enumerate(order):
            try:
                result = await call(self.endpoints[deployment.name])
            except Exception as exc:
                retryable, _, _ = classify_failure(exc)
                if not retryable:
                    raise
                self.failed(deployment)
                if i + 1 == len(order):
                    raise
                continue
            if served is not None:
                served.update(deployment=deployment.name, zone=deployment.zone)
            return result
        raise RuntimeError(f"tier {self.tier.name!r} has no deployments")  # the loader forbids
