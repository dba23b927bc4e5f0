-- wrk (Debian's, LuaJIT) as an independent load generator for bench/small_flows.py
-- (issue 17, twenty-fourth round): `small_flows.py --client wrk` runs it; by hand:
--
--   wrk -t 8 -c 8 -d 8s -s bench/small_flows.lua http://127.0.0.1:PORT -- flow TOKEN1 .. TOKEN8
--   wrk -t 8 -c 8 -d 8s -s bench/small_flows.lua http://127.0.0.1:PORT -- trivial
--
-- The same requests as the Python generators, byte for byte: GET / (trivial), or flows of
-- get_random (POST, a JSON body naming one of 50 extensions and one day of 2026) and then the
-- download of that extension's day with that random. wrk tells a script neither which
-- connection an answer came on nor which request it answers, so a thread's connections share
-- a queue: get_random's answer echoes extid/starttime/endtime and adds the random, which is
-- bound to its token and the client's address, not to a connection; a connection about to
-- send takes a queued download if there is one, else asks a new random. A random is bound to
-- the token that asked it and the echo does not name the token, so each thread uses one token
-- (the driver logs in one a thread). The driver runs as many threads as connections (8): one
-- connection and one token a thread, as the Python generators' clients (a request touches its
-- token's row, so 8 connections on one token would be a different load); the queue then
-- holds at most the thread's one waiting download. Every answer is checked as the Python
-- generators check it (status, the "Success" envelope, a CSV body or the 20021 envelope),
-- the body read whole (wrk reads Content-Length and chunked bodies); failures are counted
-- and the first is kept. done() prints one line for the driver to parse.

local API = "/api/v1.1.0"
local threads = {}
local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("id", counter)
   table.insert(threads, thread)
end

local mode, token = "trivial", ""
local host, queue, head, tail = "", {}, 1, 0
local trivial_request
-- Globals, not locals: done() reads them from each thread with thread:get.
randoms, flows, errors, first_error = 0, 0, 0, ""

-- urllib.parse.quote_plus: everything but letters, digits and "_.-~" escaped, space as "+".
local function quote_plus(text)
   return (text:gsub("[^%w_%.%-~ ]", function(char)
      return string.format("%%%02X", string.byte(char))
   end):gsub(" ", "+"))
end

local function http(method, target, body)
   return string.format(
      "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
      method, target, host, #body, body)
end

function init(args)
   host = wrk.host .. ":" .. wrk.port
   mode = args[1] or "trivial"
   token = args[1 + id] or ""
   math.randomseed(id * 7919)
   trivial_request = http("GET", "/", "")
end

local function fail(text)
   errors = errors + 1
   if first_error == "" then first_error = text:sub(1, 120):gsub("[\r\n]", " ") end
end

function request()
   if mode == "trivial" then return trivial_request end
   if head <= tail then  -- a random is waiting: its download
      local target = queue[head]
      queue[head] = nil
      head = head + 1
      return http("GET", target, "")
   end
   local ext = tostring(1000 + math.random(0, 49))
   local day = os.date("!%Y-%m-%d", 1767225600 + 86400 * math.random(0, 364))  -- 2026-01-01 +
   local body = string.format(
      '{"extid": "%s", "starttime": "%s 00:00:00", "endtime": "%s 23:59:59"}', ext, day, day)
   return http("POST", API .. "/cdr/get_random?token=" .. token, body)
end

function response(status, headers, body)
   if mode == "trivial" then
      if status == 200 and body:sub(1, 1) == "{" then flows = flows + 1
      else fail("GET /: " .. status .. " " .. body) end
      return
   end
   local random = body:match('"random":%s*"([^"]*)"')
   if random ~= nil then  -- get_random's answer: queue its download
      if status ~= 200 or not body:find('"Success"', 1, true) then
         return fail("get_random: " .. status .. " " .. body)
      end
      local ext = body:match('"extid":%s*"([^"]*)"')
      local start = body:match('"starttime":%s*"([^"]*)"')
      local stop = body:match('"endtime":%s*"([^"]*)"')
      randoms = randoms + 1
      tail = tail + 1
      queue[tail] = string.format(
         "%s/cdr/download?extid=%s&starttime=%s&endtime=%s&token=%s&random=%s",
         API, ext, quote_plus(start), quote_plus(stop), token, quote_plus(random))
      return
   end
   if status == 200 and (body:sub(1, 7) == "callid," or body:find('"20021"', 1, true)) then
      flows = flows + 1
   else
      fail("download or get_random: " .. status .. " " .. body)
   end
end

function done(summary, latency, requests)
   local total_flows, total_errors, first = 0, 0, ""
   for _, thread in ipairs(threads) do
      total_flows = total_flows + thread:get("flows")
      total_errors = total_errors + thread:get("errors")
      if first == "" then first = thread:get("first_error") end
   end
   io.write(string.format(
      "WRK done=%d errors=%d requests=%d socket_errors=%d p99_us=%d duration_us=%d first=%s\n",
      total_flows, total_errors, summary.requests,
      summary.errors.connect + summary.errors.read + summary.errors.write
         + summary.errors.status + summary.errors.timeout,
      latency:percentile(99), summary.duration, first))
end
