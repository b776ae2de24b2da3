"""Canonical model names: the data's spellings -> one litellm-style name, and name lookup.

The training data spells the same model differently per source (``gpt4_1106_preview`` vs
``gpt-4-1106-preview``, ``Meta-Llama-3_1-8B-Instruct`` vs ``llama-3.1-8b-instruct``). Training
maps every spelling through :data:`CANONICAL` so one model gets one ability. At run time
:func:`lookup_key` maps a policy's litellm model string (``openai/gpt-4o``, ``groq/llama-3.1-8b-
instant``, ``bedrock/anthropic.claude-3-haiku-20240307-v1:0`` ...) to a key of the ability table.
Light: no third-party imports.
"""

from __future__ import annotations

import functools
import re

# data spelling -> canonical name (lower case, litellm spelling where litellm has the model)
CANONICAL: dict[str, str] = {
    "Athene-70B": "athene-70b",
    "DeepSeek-Coder-V2": "deepseek-coder-v2",
    "Llama-2-13b-hf": "llama-2-13b",
    "Llama-2-70b-hf": "llama-2-70b",
    "Llama-2-7b-hf": "llama-2-7b",
    "Llama-3.1-405B-Inst-fp8": "meta-llama-3.1-405b-instruct",
    "Llama-3.1-405B-Inst@sambanova": "meta-llama-3.1-405b-instruct",
    "Meta-Llama-3.1-405B-Instruct@hyperbolic": "meta-llama-3.1-405b-instruct",
    "Meta-Llama-3-70B": "meta-llama-3-70b",
    "Meta-Llama-3-70B-Instruct": "meta-llama-3-70b-instruct",
    "Meta-Llama-3-8B": "meta-llama-3-8b",
    "Meta-Llama-3-8B-Instruct": "meta-llama-3-8b-instruct",
    "Meta-Llama-3.1-70B-Instruct": "meta-llama-3.1-70b-instruct",
    "Meta-Llama-3.1-70B-Instruct@hyperbolic": "meta-llama-3.1-70b-instruct",
    "Meta-Llama-3_1-70B-Instruct": "meta-llama-3.1-70b-instruct",
    "Meta-Llama-3.1-8B-Instruct": "meta-llama-3.1-8b-instruct",
    "Meta-Llama-3_1-8B-Instruct": "meta-llama-3.1-8b-instruct",
    "llama-3.1-8b-instruct": "meta-llama-3.1-8b-instruct",
    "Meta-Llama-3_1-70B": "meta-llama-3.1-70b",
    "Meta-Llama-3_1-8B": "meta-llama-3.1-8b",
    "Mistral-7B-Instruct-v0.1": "mistral-7b-instruct-v0.1",
    "Mistral-7B-Instruct-v0.2": "mistral-7b-instruct-v0.2",
    "mistral-7b-instruct-v0.3": "mistral-7b-instruct-v0.3",
    "mistralai/mistral-7b-chat": "mistral-7b-chat-routerbench",
    "Mistral-7B-v0.1": "mistral-7b-v0.1",
    "Mistral-7B-v0.2-hf": "mistral-7b-v0.2",
    "Mistral-Large-2": "mistral-large-2407",
    "Mixtral-8x7B-Instruct-v0.1": "mixtral-8x7b-instruct-v0.1",
    "mistralai/mixtral-8x7b-chat": "mixtral-8x7b-instruct-v0.1",
    "Mixtral-8x7B-v0.1": "mixtral-8x7b-v0.1",
    "Phi-3-mini-4k-instruct": "phi-3-mini-4k-instruct",
    "Phi-3.5-mini-instruct": "phi-3.5-mini-instruct",
    "Qwen1.5-110B": "qwen1.5-110b",
    "Qwen1.5-72B-Chat": "qwen1.5-72b-chat",
    "Qwen1.5-7B-Chat": "qwen1.5-7b-chat",
    "Qwen2-72B-Instruct": "qwen2-72b-instruct",
    "Qwen2-7B-Instruct": "qwen2-7b-instruct",
    "Qwen2.5-32B-Instruct": "qwen2.5-32b-instruct",
    "Qwen2.5-3B-Instruct": "qwen2.5-3b-instruct",
    "Qwen2.5-72B-Instruct": "qwen2.5-72b-instruct",
    "Qwen2.5-7B-Instruct": "qwen2.5-7b-instruct",
    "qwen2.5-7b-instruct": "qwen2.5-7b-instruct",
    "WizardLM/WizardLM-13B-V1.2": "wizardlm-13b-v1.2",
    "Yi-1.5-34B-Chat": "yi-1.5-34b-chat",
    "Yi-1.5-9B-Chat": "yi-1.5-9b-chat",
    "Yi-34B": "yi-34b",
    "Yi-6B": "yi-6b",
    "Yi-6b-Chat": "yi-6b-chat",
    "zero-one-ai/Yi-34B-Chat": "yi-34b-chat",
    "c4ai-command-r-v01": "command-r",
    "chatgpt-4o-latest-24-09-07": "chatgpt-4o-latest",
    "claude-3-5-sonnet-20240620": "claude-3-5-sonnet-20240620",
    "claude-3-haiku-20240307": "claude-3-haiku-20240307",
    "claude-3-opus-20240229": "claude-3-opus-20240229",
    "claude-3-sonnet-20240229": "claude-3-sonnet-20240229",
    "claude-instant-v1": "claude-instant-1",
    "claude-v1": "claude-1",
    "claude-v2": "claude-2",
    "codegemma-7b": "codegemma-7b",
    "deepseek (2024-05, folder deepseek)": "deepseek-v2-chat-2024-05",
    "deepseek-v2-chat-0628": "deepseek-v2-chat-0628",
    "deepseek-v2-coder-0724": "deepseek-v2-coder-0724",
    "deepseek-v2.5-0908": "deepseek-v2.5-0908",
    "gemini-1.5-flash": "gemini-1.5-flash-001",
    "gemini-1.5-flash-002": "gemini-1.5-flash-002",
    "gemini-1.5-flash-exp-0827": "gemini-1.5-flash-exp-0827",
    "gemini-1.5-pro": "gemini-1.5-pro-001",
    "gemini-1.5-pro-002": "gemini-1.5-pro-002",
    "gemini-1.5-pro-exp-0801": "gemini-1.5-pro-exp-0801",
    "gemini-1.5-pro-exp-0827": "gemini-1.5-pro-exp-0827",
    "gemini-2.0-flash-001": "gemini-2.0-flash-001",
    "gemini-3.1-pro (2026-02, folder merged)": "gemini-3.1-pro",
    "gemma-2-27b-it": "gemma-2-27b-it",
    "gemma-2-2b-it": "gemma-2-2b-it",
    "gemma-2-9b-it": "gemma-2-9b-it",
    "gemma-7b": "gemma-7b",
    "gpt-3.5-turbo-0125": "gpt-3.5-turbo-0125",
    "gpt-3.5-turbo-1106": "gpt-3.5-turbo-1106",
    "gpt-4-0314": "gpt-4-0314",
    "gpt-4-1106-preview": "gpt-4-1106-preview",
    "gpt4_1106_preview": "gpt-4-1106-preview",
    "gpt-4-turbo-2024-04-09": "gpt-4-turbo-2024-04-09",
    "gpt-4o (2024-05, folder gpt4o)": "gpt-4o-2024-05-13",
    "gpt-4o-2024-05-13": "gpt-4o-2024-05-13",
    "gpt-4o-2024-08-06": "gpt-4o-2024-08-06",
    "gpt-4o-mini-2024-07-18": "gpt-4o-mini-2024-07-18",
    "jamba-1.5-large": "jamba-1.5-large",
    "llama-3.1-nemotron-51b-instruct": "llama-3.1-nemotron-51b-instruct",
    "llama-3.3-nemotron-super-49b-v1": "llama-3.3-nemotron-super-49b-v1",
    "llama3-chatqa-1.5-70b": "llama3-chatqa-1.5-70b",
    "llama3-chatqa-1.5-8b": "llama3-chatqa-1.5-8b",
    "mathstral-7B": "mathstral-7b",
    "meta/code-llama-instruct-34b-chat": "codellama-34b-instruct",
    "meta/llama-2-70b-chat": "llama-2-70b-chat",
    "o1-mini-2024-09-12": "o1-mini-2024-09-12",
    "o1-preview-2024-09-12": "o1-preview-2024-09-12",
    "reka-core-20240501": "reka-core-20240501",
    "reka-flash-20240226": "reka-flash-20240226",
    "yi-large": "yi-large",
    "yi-large-preview": "yi-large-preview",
}

# common litellm / provider spellings (already normalised by _normalise) -> canonical name
ALIASES: dict[str, str] = {
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4-turbo": "gpt-4-turbo-2024-04-09",
    "gpt-4-turbo-preview": "gpt-4-1106-preview",
    "gpt-4-1106": "gpt-4-1106-preview",
    "gpt-4": "gpt-4-0314",
    "gpt-3.5-turbo": "gpt-3.5-turbo-0125",
    "o1-mini": "o1-mini-2024-09-12",
    "o1-preview": "o1-preview-2024-09-12",
    "claude-3-5-sonnet": "claude-3-5-sonnet-20240620",
    "claude-3-5-sonnet-latest": "claude-3-5-sonnet-20240620",
    "claude-3.5-sonnet": "claude-3-5-sonnet-20240620",
    "claude-3-haiku": "claude-3-haiku-20240307",
    "claude-3-opus": "claude-3-opus-20240229",
    "claude-3-opus-latest": "claude-3-opus-20240229",
    "claude-3-sonnet": "claude-3-sonnet-20240229",
    "claude-instant-1.2": "claude-instant-1",
    "claude-instant-v1": "claude-instant-1",
    "claude-v2": "claude-2",
    "claude-v1": "claude-1",
    "gemini-1.5-pro": "gemini-1.5-pro-002",
    "gemini-1.5-flash": "gemini-1.5-flash-002",
    "gemini-2.0-flash": "gemini-2.0-flash-001",
    "mixtral-8x7b": "mixtral-8x7b-instruct-v0.1",
    "mixtral-8x7b-instruct": "mixtral-8x7b-instruct-v0.1",
    "open-mixtral-8x7b": "mixtral-8x7b-instruct-v0.1",
    "mixtral-8x7b-32768": "mixtral-8x7b-instruct-v0.1",
    "mixtral-8x7b-chat": "mixtral-8x7b-instruct-v0.1",
    "mistral-large": "mistral-large-2407",
    "mistral-large-latest": "mistral-large-2407",
    "open-mistral-7b": "mistral-7b-instruct-v0.3",
    "mistral-7b-instruct": "mistral-7b-instruct-v0.3",
    "llama-3.1-8b-instant": "meta-llama-3.1-8b-instruct",
    "llama-3.1-8b-instruct": "meta-llama-3.1-8b-instruct",
    "llama-3.1-70b-versatile": "meta-llama-3.1-70b-instruct",
    "llama-3.1-70b-instruct": "meta-llama-3.1-70b-instruct",
    "llama-3.1-405b-instruct": "meta-llama-3.1-405b-instruct",
    "llama3-70b-8192": "meta-llama-3-70b-instruct",
    "llama3-8b-8192": "meta-llama-3-8b-instruct",
    "llama-3-70b-instruct": "meta-llama-3-70b-instruct",
    "llama-3-8b-instruct": "meta-llama-3-8b-instruct",
    "llama-2-70b-chat-hf": "llama-2-70b-chat",
    "codellama-34b-instruct-hf": "codellama-34b-instruct",
    "yi-34b-chat": "yi-34b-chat",
    "command-r-v01": "command-r",
}

_SUFFIXES = ("-turbo", "-fp8", "-v1:0", "-v2:0", ":free", "-hf")


def _normalise(name: str) -> str:
    s = name.strip().lower().replace("_", "-")
    s = s.split("@", 1)[0]
    for prefix in ("us.", "eu.", "apac.", "anthropic.", "meta.", "mistral.", "cohere."):
        if s.startswith(prefix):
            s = s[len(prefix) :]
    return s


def candidates(name: str) -> list[str]:
    """Keys to try for ``name``, most specific first: full, without providers, trimmed."""
    base = _normalise(name)
    parts = base.split("/")
    keys = ["/".join(parts[i:]) for i in range(len(parts))]
    out: list[str] = []
    for key in keys:
        out.append(key)
        trimmed = key
        for suffix in _SUFFIXES:
            if trimmed.endswith(suffix):
                trimmed = trimmed[: -len(suffix)]
                out.append(trimmed)
        stripped = re.sub(r"-(latest|\d{8}|\d{4}-\d{2}-\d{2})$", "", trimmed)
        if stripped != trimmed:
            out.append(stripped)
    return out


@functools.lru_cache(maxsize=4096)
def canonical(data_name: str) -> str:
    """Canonical name of a model as spelled in the training data.

    Cached: training calls it for every label of every row, once per leave-one-source-out fold
    (about 9 million calls over a few hundred distinct names, 70 s of a 5-minute `tierwise
    train` uncached); CANONICAL and ALIASES are constants, so the answer never changes.
    """
    if data_name in CANONICAL:
        return CANONICAL[data_name]
    for key in candidates(data_name):
        if key in ALIASES:
            return ALIASES[key]
    return _normalise(data_name).split("/")[-1]


def lookup_key(name: str, table: dict[str, float]) -> str | None:
    """The key of ``table`` that ``name`` (a litellm model string) refers to, or None."""
    if name in table:
        return name
    if name in CANONICAL and CANONICAL[name] in table:
        return CANONICAL[name]
    for key in candidates(name):
        if key in table:
            return key
        if key in ALIASES and ALIASES[key] in table:
            return ALIASES[key]
    return None
