"""CPU per upstream call: litellm.acompletion vs litellm.Router vs router/upstream/passthrough.py.

    /tmp/v1/bin/python bench/proxy/client_cpu.py [--calls 2000] [--concurrency 16]

Starts bench/proxy/upstream.py in its own process (so its CPU is not counted), then in this
process, for each client and for non-stream and stream: warm-up, then `--calls` calls with
`--concurrency` in flight, and reports process CPU time (user+system, all threads: litellm's
logging worker counts) per call, and wall time. Prints a markdown table; bench/PROFILE.md quotes it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
PORT = 18711
BASE = f"http://127.0.0.1:{PORT}/v1"
MESSAGES = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Explain in two sentences why the sky is blue."}]


async def run_case(name: str, call, calls: int, conc: int) -> dict:  # type: ignore[no-untyped-def]
    for _ in range(50):
        await call()
    sem = asyncio.Semaphore(conc)

    async def one() -> None:
        async with sem:
            await call()

    c0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(calls)))
    c1, t1 = time.process_time(), time.perf_counter()
    return {"client": name, "cpu_ms_per_call": (c1 - c0) * 1000 / calls,
            "wall_s": t1 - t0, "calls_per_s": calls / (t1 - t0)}


async def main_async(calls: int, conc: int, only: str | None) -> list[dict]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import aiohttp
    import litellm

    from router.upstream import passthrough as pt

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    lrouter = litellm.Router(model_list=[{"model_name": "bench", "litellm_params": {
        "model": "openai/bench-small", "api_base": BASE, "api_key": "x", "max_retries": 0}}],
        num_retries=0)
    session = aiohttp.ClientSession()
    body = json.dumps({"model": "bench-small", "messages": MESSAGES}).encode()
    sbody = json.dumps({"model": "bench-small", "messages": MESSAGES, "stream": True}).encode()

    async def raw_aiohttp() -> None:
        async with session.post(BASE + "/chat/completions", data=body,
                                headers={"Content-Type": "application/json"}) as r:
            json.loads(await r.read())

    async def raw_aiohttp_stream() -> None:
        async with session.post(BASE + "/chat/completions", data=sbody,
                                headers={"Content-Type": "application/json"}) as r:
            async for _ in r.content.iter_any():
                pass

    async def passthrough() -> None:
        await pt.chat_completion(BASE, "x", {"messages": MESSAGES}, 30, model="bench-small")

    async def passthrough_stream() -> None:
        async for _ in pt.stream_chat_completion(BASE, "x", {"messages": MESSAGES}, 30,
                                                 model="bench-small"):
            pass

    async def acompletion() -> None:
        await litellm.acompletion(model="openai/bench-small", api_base=BASE, api_key="x",
                                  messages=MESSAGES, max_retries=0, timeout=30)

    async def acompletion_stream() -> None:
        resp = await litellm.acompletion(model="openai/bench-small", api_base=BASE,
                                         api_key="x", messages=MESSAGES, max_retries=0,
                                         timeout=30, stream=True)
        async for _ in resp:
            pass

    async def router_call() -> None:
        await lrouter.acompletion(model="bench", messages=MESSAGES)

    async def router_stream() -> None:
        resp = await lrouter.acompletion(model="bench", messages=MESSAGES, stream=True)
        async for _ in resp:
            pass

    def cost() -> None:
        pass

    cases = [("raw aiohttp", raw_aiohttp), ("raw aiohttp, stream", raw_aiohttp_stream),
             ("router.upstream.passthrough", passthrough),
             ("router.upstream.passthrough, stream", passthrough_stream),
             ("litellm.acompletion", acompletion), ("litellm.acompletion, stream",
                                                    acompletion_stream),
             ("litellm.Router", router_call), ("litellm.Router, stream", router_stream)]
    out = []
    for name, fn in cases:
        if only and only not in name:
            continue
        n = calls if "litellm" not in name else max(calls // 4, 200)
        r = await run_case(name, fn, n, conc)
        r["calls"] = n
        out.append(r)
        print(f"{name:32s} {r['cpu_ms_per_call']:7.3f} ms CPU/call  "
              f"{r['calls_per_s']:7.0f} calls/s  ({n} calls)", flush=True)
    # litellm.completion_cost on a dict-shaped answer: what the pass-through path would still pay
    resp = await litellm.acompletion(model="openai/bench-small", api_base=BASE, api_key="x",
                                     messages=MESSAGES, max_retries=0)
    litellm.register_model({"openai/bench-small": {"input_cost_per_token": 1.5e-7,
                                                   "output_cost_per_token": 6e-7,
                                                   "litellm_provider": "openai",
                                                   "mode": "chat"}})
    c0 = time.process_time()
    for _ in range(500):
        litellm.completion_cost(completion_response=resp, model="openai/bench-small")
    c1 = time.process_time()
    out.append({"client": "litellm.completion_cost (per call)",
                "cpu_ms_per_call": (c1 - c0) * 1000 / 500, "wall_s": 0, "calls_per_s": 0,
                "calls": 500})
    c0 = time.process_time()
    for _ in range(500):
        litellm.cost_per_token(model="openai/bench-small", prompt_tokens=12,
                               completion_tokens=12)
    c1 = time.process_time()
    out.append({"client": "litellm.cost_per_token (per call)",
                "cpu_ms_per_call": (c1 - c0) * 1000 / 500, "wall_s": 0, "calls_per_s": 0,
                "calls": 500})
    await session.close()
    await pt.close_default_client()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--only")
    args = ap.parse_args()
    up = subprocess.Popen([sys.executable, str(HERE / "upstream.py"), "--port", str(PORT)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{PORT}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        rows = asyncio.run(main_async(args.calls, args.concurrency, args.only))
    finally:
        up.terminate()
        up.wait(5)
    print(f"\nload average (1 min) at end: {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores; "
          f"concurrency {args.concurrency}\n")
    print("| client | CPU ms per call | calls/s (this process) |\n|---|---:|---:|")
    for r in rows:
        print(f"| {r['client']} | {r['cpu_ms_per_call']:.3f} | "
              f"{r['calls_per_s']:.0f} |" if r["calls_per_s"] else
              f"| {r['client']} | {r['cpu_ms_per_call']:.3f} | - |")
    if not args.only:
        (HERE / "client_cpu.json").write_text(json.dumps(
            {"load_average_end": os.getloadavg()[0], "concurrency": args.concurrency,
             "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
