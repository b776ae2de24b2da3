-- wrk script for bench/proxy/run.py: POST an OpenAI chat body, a different prompt on every
-- request (so no cache or coalescing can merge requests), and print a JSON summary line.
-- Environment: BENCH_MODEL (model field), BENCH_STREAM ("1" streams), BENCH_AUTH (bearer key).
local model = os.getenv("BENCH_MODEL") or "auto"
local stream = os.getenv("BENCH_STREAM") == "1"
local auth = os.getenv("BENCH_AUTH")
local counter = 0

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
if auth and auth ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. auth
end

local head = '{"model":"' .. model .. '",' .. (stream and '"stream":true,' or '') ..
  '"max_tokens":64,"messages":[{"role":"system","content":"You are a helpful assistant."},' ..
  '{"role":"user","content":"Explain in two sentences why the sky is blue. (request '
local tail = ')"}]}'

request = function()
  counter = counter + 1
  return wrk.format(nil, nil, nil, head .. counter .. tail)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f,"err_connect":%d,"err_read":%d,"err_write":%d,' ..
    '"err_status":%d,"err_timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write, e.status,
    e.timeout))
end
