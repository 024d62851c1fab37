-- wrk script for bench/chat_turn.py: a mix of new and continuing conversations.
--
--   wrk -t2 -c50 -d15s -s bench/chat_mix.lua http://127.0.0.1:PORT -- PATH KEY MESSAGES MAX_TURNS
--
-- PATH       the chat endpoint, e.g. /api/nectar-bots/<bot id>/chat
-- KEY        the bot's API key, or "-" for none (the floor app)
-- MESSAGES   a file of lines "F<TAB>json string" (opening turns) and "C<TAB>json string"
--            (follow-ups), each string already JSON-encoded with its quotes
-- MAX_TURNS  user turns after which a conversation is no longer continued
--
-- About half the requests start a conversation; the other half continue one whose earlier
-- response gave its conversation_id. A conversation is taken out of the pool while its turn is
-- in flight, so no two turns of one conversation run at once (as with a real client).
-- done() prints one line "NECTAR_WRK {json}" that chat_turn.py reads.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function init(args)
  path, key, max_turns = args[1], args[2], tonumber(args[4])
  firsts, follows = {}, {}
  for line in io.lines(args[3]) do
    local kind, msg = line:match("^(%a)\t(.*)$")
    if kind == "F" then
      firsts[#firsts + 1] = msg
    elseif kind == "C" then
      follows[#follows + 1] = msg
    end
  end
  headers = { ["Content-Type"] = "application/json" }
  if key ~= "-" then
    headers["Authorization"] = "Bearer " .. key
  end
  open, turns = {}, {}
  started, continued, non200, unparsed = 0, 0, 0, 0
  statuses = ""
  math.randomseed(os.time() * 100 + id)
end

function request()
  local body
  if #open > 0 and math.random() < 0.5 then
    local i = math.random(#open)
    local cid = open[i]
    open[i] = open[#open]
    open[#open] = nil
    continued = continued + 1
    body = '{"message":' .. follows[math.random(#follows)] .. ',"conversation_id":"' .. cid .. '"}'
  else
    started = started + 1
    body = '{"message":' .. firsts[math.random(#firsts)] .. "}"
  end
  return wrk.format("POST", path, headers, body)
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
    if #statuses < 200 then
      statuses = statuses .. status .. " "
    end
    return
  end
  local cid = body:match('"conversation_id"%s*:%s*"([%x%-]+)"')
  if not cid then
    unparsed = unparsed + 1
    return
  end
  local n = (turns[cid] or 0) + 1
  if n < max_turns then
    turns[cid] = n
    open[#open + 1] = cid
  else
    turns[cid] = nil
  end
end

function done(summary, latency, requests)
  local t = { started = 0, continued = 0, non200 = 0, unparsed = 0, statuses = "" }
  for _, thread in ipairs(threads) do
    t.started = t.started + thread:get("started")
    t.continued = t.continued + thread:get("continued")
    t.non200 = t.non200 + thread:get("non200")
    t.unparsed = t.unparsed + thread:get("unparsed")
    t.statuses = t.statuses .. thread:get("statuses")
  end
  local e = summary.errors
  io.write(string.format(
    'NECTAR_WRK {"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"started":%d,"continued":%d,"non200":%d,"unparsed":%d,"statuses":"%s",'
      .. '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    t.started, t.continued, t.non200, t.unparsed, t.statuses,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max
  ))
end
