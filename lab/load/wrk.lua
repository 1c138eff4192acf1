-- asgi-lab: send the endpoint's request and check every response like the lab's own
-- clients (the expected status, any 2xx by default, and the body check if any), count
-- requests per worker from the wrapper's x-lab-worker header, and print one JSON line at
-- the end with wrk's latency histogram (1 us buckets).
-- Arguments: method, expected status ("" = any 2xx), expected substring in hex ("" =
-- none), expected JSON subset in hex ("" = none), body in hex ("-" = none), then header
-- name and value pairs.
local threads = {}
local HEADER = "x-lab-worker"

function setup(thread)
  table.insert(threads, thread)
end

local function unhex(text)
  return (text:gsub("..", function(h) return string.char(tonumber(h, 16)) end))
end

-- A small JSON decoder, for the JSON-subset check (lab.matrix.endpoint.is_subset's rules).
local NULL, ARRAY = {}, {}  -- JSON null; the key that holds an array's length
local ESCAPES = {['"'] = '"', ['\\'] = '\\', ['/'] = '/', b = '\b', f = '\f', n = '\n',
                 r = '\r', t = '\t'}

local function utf8(code)
  if code < 0x80 then return string.char(code) end
  if code < 0x800 then
    return string.char(0xC0 + math.floor(code / 0x40), 0x80 + code % 0x40)
  end
  if code < 0x10000 then
    return string.char(0xE0 + math.floor(code / 0x1000), 0x80 + math.floor(code / 0x40) % 0x40,
                       0x80 + code % 0x40)
  end
  return string.char(0xF0 + math.floor(code / 0x40000), 0x80 + math.floor(code / 0x1000) % 0x40,
                     0x80 + math.floor(code / 0x40) % 0x40, 0x80 + code % 0x40)
end

local function skip(s, i)
  return s:find("[^ \t\r\n]", i) or #s + 1
end

local decode

local function decode_string(s, i)  -- s[i] is the opening quote
  local out, j = {}, i + 1
  while true do
    local k = s:find('["\\]', j)
    if not k then return nil end
    table.insert(out, s:sub(j, k - 1))
    if s:sub(k, k) == '"' then return table.concat(out), k + 1 end
    local c = s:sub(k + 1, k + 1)
    if c == "u" then
      local code = tonumber(s:sub(k + 2, k + 5), 16)
      if not code then return nil end
      j = k + 6
      if code >= 0xD800 and code < 0xDC00 and s:sub(j, j + 1) == "\\u" then
        local low = tonumber(s:sub(j + 2, j + 5), 16)
        if low and low >= 0xDC00 and low < 0xE000 then
          code = 0x10000 + (code - 0xD800) * 0x400 + (low - 0xDC00)
          j = j + 6
        end
      end
      table.insert(out, utf8(code))
    else
      if not ESCAPES[c] then return nil end
      table.insert(out, ESCAPES[c])
      j = k + 2
    end
  end
end

decode = function(s, i)  -- the value at i, and the index after it; nil if not JSON
  i = skip(s, i)
  local c = s:sub(i, i)
  if c == '"' then return decode_string(s, i) end
  if c == "{" then
    local out = {}
    i = skip(s, i + 1)
    if s:sub(i, i) == "}" then return out, i + 1 end
    while true do
      if s:sub(i, i) ~= '"' then return nil end
      local key, value
      key, i = decode_string(s, i)
      if not key then return nil end
      i = skip(s, i)
      if s:sub(i, i) ~= ":" then return nil end
      value, i = decode(s, i + 1)
      if value == nil then return nil end
      out[key] = value
      i = skip(s, i)
      c = s:sub(i, i)
      if c == "}" then return out, i + 1 end
      if c ~= "," then return nil end
      i = skip(s, i + 1)
    end
  end
  if c == "[" then
    local out, n = {}, 0
    i = skip(s, i + 1)
    out[ARRAY] = 0
    if s:sub(i, i) == "]" then return out, i + 1 end
    while true do
      local value
      value, i = decode(s, i)
      if value == nil then return nil end
      n = n + 1
      out[n] = value
      out[ARRAY] = n
      i = skip(s, i)
      c = s:sub(i, i)
      if c == "]" then return out, i + 1 end
      if c ~= "," then return nil end
      i = i + 1
    end
  end
  if s:sub(i, i + 3) == "true" then return true, i + 4 end
  if s:sub(i, i + 4) == "false" then return false, i + 5 end
  if s:sub(i, i + 3) == "null" then return NULL, i + 4 end
  local number = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", i)
  if number and tonumber(number) then return tonumber(number), i + #number end
  return nil
end

local function parse(s)
  local value, i = decode(s, 1)
  if value == nil or skip(s, i) <= #s then return nil end
  return value
end

local function subset(want, got)  -- objects: string keys; arrays: 1..n and [ARRAY] = n
  if type(want) ~= "table" or want == NULL then return want == got end
  if type(got) ~= "table" or got == NULL then return false end
  if want[ARRAY] then
    if got[ARRAY] ~= want[ARRAY] then return false end
    for k = 1, want[ARRAY] do
      if not subset(want[k], got[k]) then return false end
    end
    return true
  end
  if got[ARRAY] then return false end
  for key, value in pairs(want) do  -- string keys only: an object has no other
    if got[key] == nil or not subset(value, got[key]) then return false end
  end
  return true
end

function init(args)
  pids, statuses, badbody = {}, {}, 0
  expected = tonumber(args[2])
  contains = args[3] ~= "" and unhex(args[3]) or nil
  wanted = args[4] ~= "" and parse(unhex(args[4])) or nil
  if args[4] ~= "" and wanted == nil then error("expect.json is not JSON this script reads") end
  -- wrk.init formats the request once, after this: every request is the same bytes
  wrk.method = args[1]
  if args[5] ~= "-" then wrk.body = unhex(args[5]) end
  for i = 6, #args - 1, 2 do
    -- wrk keeps its own Host under "Host": any spelling of the user's must replace it
    local name = args[i]:lower() == "host" and "Host" or args[i]
    wrk.headers[name] = args[i + 1]
  end
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
  if wanted ~= nil then
    local got = body and parse(body)
    if got == nil or not subset(wanted, got) then
      badbody = badbody + 1
      return
    end
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
