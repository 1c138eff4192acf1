-- asgi-lab: send the endpoint's request and check every response like the lab's own
-- clients (the expected status, any 2xx by default, and the body check if any), count
-- requests per worker from the wrapper's x-lab-worker header, and print one JSON line at
-- the end with wrk's latency histogram (1 us buckets).
-- Arguments: method, expected status ("" = any 2xx), expected substring in hex ("" =
-- none), body in hex ("-" = none), then header name and value pairs.
local threads = {}
local HEADER = "x-lab-worker"

function setup(thread)
  table.insert(threads, thread)
end

local function unhex(text)
  return (text:gsub("..", function(h) return string.char(tonumber(h, 16)) end))
end

function init(args)
  pids, statuses, badbody = {}, {}, 0
  expected = tonumber(args[2])
  contains = args[3] ~= "" and unhex(args[3]) or nil
  -- wrk.init formats the request once, after this: every request is the same bytes
  wrk.method = args[1]
  if args[4] ~= "-" then wrk.body = unhex(args[4]) end
  for i = 5, #args - 1, 2 do wrk.headers[args[i]] = args[i + 1] end
end

local function worker(headers)
  local pid = headers[HEADER]
  if not pid then
    for name, value in pairs(headers) do
      if name:lower() == HEADER then pid = value end
    end
  end
  return pid and pid:match("^%d+$")
end

function response(status, headers, body)
  if (expected and status ~= expected) or (not expected and (status < 200 or status > 299)) then
    statuses[status] = (statuses[status] or 0) + 1
    return
  end
  if contains and not (body and body:find(contains, 1, true)) then
    badbody = badbody + 1
    return
  end
  local pid = worker(headers)
  if pid then pids[pid] = (pids[pid] or 0) + 1 end
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
