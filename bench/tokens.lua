-- wrk script for the auth hook: one token per request, taken from token files made by prepare.py.
--
--   wrk -t1 -c64 -d10s --latency -s bench/tokens.lua URL -- MODE FILE [FILE2]
--
-- MODE
--   loop FILE          GET, `Authorization: Bearer <t>`, rotating through FILE (warm, bad, unknown_kid)
--   stream FILE        GET, each request takes the NEXT line of FILE, never repeating (cold); if the
--                      file runs out it starts over and the RESULT line reports wraps > 0
--   mixed WARM COLD    GET, 9 of every 10 requests from the WARM pool (rotating), 1 from COLD (stream)
--   post FILE          POST, Hasura's POST-mode body {"headers":{"Authorization":...,"User-Agent":...},
--                      "request":{"query":"query { __typename }"}}, rotating through FILE
-- Requests are pre-built with wrk.format in init (loop/post/the warm part of mixed); streamed ones are
-- one string concatenation around the token. Threads (-t > 1, export THREADS=<same n>) split the work:
-- thread k starts the rotation at an offset and streams only lines k, k+T, k+2T...
-- Prints at the end one machine-readable line:
--   RESULT rps=.. p50_ms=.. p90_ms=.. p99_ms=.. max_ms=.. requests=.. non2xx=.. errors=.. wraps=.. streamed=..

local threads, next_id = {}, 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local mode
local reqs, n, i = {}, 0, 0          -- pre-built requests
local f, path, prefix, suffix         -- streamed tokens
local nthreads = tonumber(os.getenv("THREADS") or "1")
local counter = 0
wraps, streamed = 0, 0

local function read_lines(p)
  local out = {}
  for line in io.lines(p) do
    if #line > 0 then out[#out + 1] = line end
  end
  assert(#out > 0, "no tokens in " .. p)
  return out
end

local function get_request(token)
  return wrk.format("GET", nil, { ["Host"] = wrk.host, ["Authorization"] = "Bearer " .. token })
end

local function open_stream(p)
  path = p
  f = assert(io.open(p, "r"), "cannot open " .. p)
  assert(f:read("*l"), "no tokens in " .. p)
  f:close()
  f = io.open(p, "r")
  local template = get_request("@@TOKEN@@")
  local s, e = string.find(template, "@@TOKEN@@", 1, true)
  prefix, suffix = string.sub(template, 1, s - 1), string.sub(template, e + 1)
  -- this thread takes lines tid+1, tid+1+T, ...: skip the first tid lines
  for _ = 1, tid or 0 do f:read("*l") end
end

local function next_streamed()
  local line
  repeat
    line = f:read("*l")
    if line == nil then
      f:close()
      f = io.open(path, "r")
      wraps = wraps + 1
      for _ = 1, tid or 0 do f:read("*l") end
      line = f:read("*l")
    end
  until line ~= nil and #line > 0
  for _ = 2, nthreads do f:read("*l") end   -- the other threads' lines
  streamed = streamed + 1
  return prefix .. line .. suffix
end

function init(args)
  mode = args[1]
  local tokens
  if mode == "loop" or mode == "mixed" then
    tokens = read_lines(args[2])
    for k, t in ipairs(tokens) do reqs[k] = get_request(t) end
  elseif mode == "post" then
    tokens = read_lines(args[2])
    for k, t in ipairs(tokens) do
      local body = '{"headers":{"Authorization":"Bearer ' .. t ..
        '","User-Agent":"Mozilla/5.0 (bench) election-webhook-harness"},' ..
        '"request":{"query":"query { __typename }"}}'
      reqs[k] = wrk.format("POST", nil, { ["Host"] = wrk.host, ["Content-Type"] = "application/json",
        ["User-Agent"] = "hasura-graphql-engine/v2.44.0" }, body)
    end
  elseif mode == "stream" then
    open_stream(args[2])
  else
    error("unknown mode " .. tostring(mode) .. " (loop|stream|mixed|post)")
  end
  if mode == "mixed" then open_stream(args[3]) end
  n = #reqs
  -- spread threads over the pool
  if n > 0 then i = math.floor((tid or 0) * n / nthreads) end
end

function request()
  if mode == "stream" then return next_streamed() end
  if mode == "mixed" then
    counter = counter + 1
    if counter % 10 == 0 then return next_streamed() end
  end
  i = i % n + 1
  return reqs[i]
end

function done(summary, latency, requests)
  local w, s = 0, 0
  for _, t in ipairs(threads) do
    w = w + (tonumber(t:get("wraps")) or 0)
    s = s + (tonumber(t:get("streamed")) or 0)
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f requests=%d non2xx=%d errors=%d wraps=%d streamed=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, summary.requests, e.status,
    e.connect + e.read + e.write + e.timeout, w, s))
end
