"""The SDK's `complete()` prints nothing to stderr (issue 16, item 3).

A script that called `complete()` once and exited printed a Rust panic in about half of its
runs ("pyo3 ... dictionary changed size during iteration"; 9 of 20, then 5 of 10, before the
fix; 0 of 20 after): litellm hands its response object to its logging thread, which serializes
it (pydantic-core, in Rust), while `complete()` set `.tierwise` on that same object. Now the
caller gets a copy and litellm's object is left alone. The check below is deterministic: a
litellm success callback (litellm's public hook) receives litellm's object, which must not be
the one `complete()` returned, nor carry `.tierwise`; and the process's stderr stays empty.
A real process on the embedded demo's simulated upstream.
"""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import threading
from router.upstream.calls import litellm_module

litellm = litellm_module()
logged, done = [], threading.Event()

def on_success(kwargs, completion_response, start_time, end_time):
    logged.append(completion_response)
    done.set()

litellm.success_callback.append(on_success)
from router import complete

response = complete("What is 2+2?")
assert response.tierwise.tier in {"small", "medium", "large"}, response.tierwise
assert response.choices[0].message.content.startswith("[sim-")
assert done.wait(30), "litellm's logging thread never finished (did it panic?)"
assert logged[0] is not response, "complete() returned litellm's own object"
assert not hasattr(logged[0], "tierwise"), "complete() changed litellm's object"
print("ok")
"""


def test_complete_leaves_litellms_object_alone_and_stderr_empty() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    assert out.stderr == "", out.stderr
