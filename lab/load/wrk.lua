-- asgi-lab: check every response like the lab's own clients (status 200 and a JSON body
-- with the worker's pid), count requests per worker, and print one JSON line at the end.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  pids, non200, badbody = {}, 0, 0
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
    return
  end
  local pid = body:match('"pid":%s*(%d+)')
  if pid then pids[pid] = (pids[pid] or 0) + 1 else badbody = badbody + 1 end
end

function done(summary, latency, requests)
  local all, n200, bad = {}, 0, 0
  for _, t in ipairs(threads) do
    for pid, n in pairs(t:get("pids")) do all[pid] = (all[pid] or 0) + n end
    n200 = n200 + t:get("non200")
    bad = bad + t:get("badbody")
  end
  local parts = {}
  for pid, n in pairs(all) do table.insert(parts, string.format('"%s":%d', pid, n)) end
  local e = summary.errors
  io.write(string.format(
    'LABJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"timeout":%d,"non200":%d,"bad_body":%d,"min_us":%d,"mean_us":%f,"max_us":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"pids":{%s}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, n200, bad,
    latency.min, latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), table.concat(parts, ",")))
end
