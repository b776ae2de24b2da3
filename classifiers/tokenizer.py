"""Offline tiktoken encoding (o200k_base), for measuring: not on the request path.

The difficulty features hash words without this tokenizer (classifiers/hashing.py); this encoding is
used by bench/latency.py (prompts of N tokens) and the tests (the token-count estimate's error).

tiktoken downloads its BPE files on first use, which must never happen on the request path.
litellm (a runtime dependency) ships the o200k_base BPE file in
``litellm/litellm_core_utils/tokenizers/``; we find that directory *without importing litellm*
(``importlib.util.find_spec``), verify the file's sha256 and build the ``tiktoken.Encoding``
ourselves. If the file cannot be found we fall back to ``tiktoken.get_encoding`` (which uses
tiktoken's own cache, or the network) and say so in the error if that fails too.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import marshal
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

ENCODING_NAME = "o200k_base"
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
# sha1 of the blob URL: the file name tiktoken's cache (and litellm's copy) uses.
O200K_CACHE_KEY = "fb374d419588a4632f3f557e76b4b70aebbca790"
O200K_PAT = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
O200K_SPECIAL = {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}
VOCAB_SIZE = 200019  # max token id + 1 (special tokens never come out of encode_ordinary)


def _candidate_files() -> list[Path]:
    out: list[Path] = []
    env = os.environ.get("TIERWISE_TIKTOKEN_FILE")
    if env:
        out.append(Path(env))
    spec = importlib.util.find_spec("litellm")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            out.append(Path(loc) / "litellm_core_utils" / "tokenizers" / O200K_CACHE_KEY)
    for var in ("TIKTOKEN_CACHE_DIR", "CUSTOM_TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if os.environ.get(var):
            out.append(Path(os.environ[var]) / O200K_CACHE_KEY)
    return out


def _parse_bpe(data: bytes) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _cache_file() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "tierwise" / f"{ENCODING_NAME}-{O200K_SHA256[:16]}.marshal"


def _load_ranks(data: bytes) -> dict[bytes, int]:
    """The BPE ranks of `data` (already sha256-checked), via a marshal cache of the parse.

    Parsing 200k base64 lines costs ~0.35 s at every start of `tierwise route`; loading the
    marshalled dict costs ~0.08 s. The cache is keyed by the file's sha256 and only an
    optimisation: any problem reading or writing it falls back to parsing.
    """
    cache = _cache_file()
    try:
        ranks = marshal.loads(cache.read_bytes())
        if isinstance(ranks, dict) and len(ranks) > 1000:
            return ranks
    except (OSError, EOFError, ValueError, TypeError):
        pass
    ranks = _parse_bpe(data)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a concurrent reader never sees half a file.
        with tempfile.NamedTemporaryFile(dir=cache.parent, delete=False) as tmp:
            tmp.write(marshal.dumps(ranks))
        os.replace(tmp.name, cache)
    except OSError:
        pass  # a read-only home is fine: the next start parses again
    return ranks


@lru_cache(maxsize=1)
def get_encoding() -> Any:
    """The o200k_base ``tiktoken.Encoding``, built from a local file; cached per process."""
    import tiktoken

    for path in _candidate_files():
        if not path.is_file():
            continue
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != O200K_SHA256:
            continue
        ranks = _load_ranks(data)
        del data
        enc = tiktoken.Encoding(
            name=ENCODING_NAME,
            pat_str=O200K_PAT,
            mergeable_ranks=ranks,
            special_tokens=O200K_SPECIAL,
        )
        # The Rust core keeps its own copy of the ranks; the Python dict (~25 MB) is only used
        # by token_byte_values()/pickling, which tierwise never calls. Free it.
        ranks.clear()
        return enc
    try:
        return tiktoken.get_encoding(ENCODING_NAME)
    except Exception as exc:  # pragma: no cover - only without litellm and without network
        raise RuntimeError(
            "tierwise: cannot load the o200k_base tokenizer offline. Install litellm "
            "(it ships the BPE file) or set TIERWISE_TIKTOKEN_FILE to an o200k_base.tiktoken file."
        ) from exc
