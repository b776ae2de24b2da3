"""Several deployments inside one tier, balanced by litellm.Router.

A tier that lists `deployments` (the same model on several endpoints or keys) is served by one
`litellm.Router` whose single model group is the tier's name. litellm already does load
balancing, retries across deployments and cooldowns of failing ones; tierwise only configures it
and escalates to the next tier when the whole group fails. A tier with one endpoint does not use
this (a direct `litellm.acompletion` costs ~1.5 ms less CPU per call).
"""

from __future__ import annotations

from typing import Any

from policies import Policy, Tier
from router.upstream import endpoint_arguments, litellm_module


def model_list(tier: Tier, policy: Policy) -> list[dict[str, Any]]:
    """litellm.Router's model_list for `tier`: one entry per deployment, all named after it."""
    timeout = tier.timeout_s or policy.timeout_s
    entries = []
    for i, deployment in enumerate(tier.deployments):
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
                        "model_info": {"id": f"{tier.name}-{i}"}})
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
