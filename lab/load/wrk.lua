-- asgi-lab: check every response like the lab's own clients (status 200 and a JSON body
-- with the worker's pid and, when it names one, the endpoint asked for), count requests per
-- worker, and print one JSON line at the end with wrk's latency histogram (1 us buckets).
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  pids, statuses, badbody, expected = {}, {}, 0, args[1]
end

function response(status, headers, body)
  if status ~= 200 then
    statuses[status] = (statuses[status] or 0) + 1
    return
  end
  local pid = body:match('"pid":%s*(%d+)')
  local endpoint = body:match('"endpoint":%s*"([^"]*)"')
  if pid and (endpoint == nil or endpoint == expected) then
    pids[pid] = (pids[pid] or 0) + 1
  else
    badbody = badbody + 1
  end
end

function done(summary, latency, requests)
  local all, codes, bad = {}, {}, 0
  for _, t in ipairs(threads) do
    for pid, n in pairs(t:get("pids")) do all[pid] = (all[pid] or 0) + n end
    for code, n in pairs(t:get("statuses")) do codes[code] = (codes[code] or 0) + n end
    bad = bad + t:get("badbody")
  end
  local parts, http, buckets = {}, {}, {}
  for pid, n in pairs(all) do table.insert(parts, string.format('"%s":%d', pid, n)) end
  for code, n in pairs(codes) do table.insert(http, string.format('"http_%d":%d', code, n)) end
  for i = 1, #latency do
    local us, n = latency(i)
    table.insert(buckets, string.format('[%d,%d]', us, n))
  end
  local e = summary.errors
  io.write(string.format(
    'LABJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"timeout":%d,"http":{%s},"bad_body":%d,"pids":{%s},"latency_us":[%s]}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout,
    table.concat(http, ","), bad, table.concat(parts, ","), table.concat(buckets, ",")))
end
