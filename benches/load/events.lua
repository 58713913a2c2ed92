-- wrk script: POSTs ~1 KB webinar events (a name, an email, an IP and about
-- twenty other fields), every request different (a per-connection counter
-- and seed go into the name, the email, the IP and the ids), so no peer can
-- answer from a cache of HMACs. At the end, one machine-readable line.
--
--   wrk -t1 -c64 -d10s --latency -s events.lua http://127.0.0.1:PORT/pseudo/e

local counter = 0
local seed = 0

local first = { "Anna", "Mads", "Sofie", "Lars", "Freja", "Jens", "Ida", "Mikkel",
                "Karen", "Søren", "Emma", "Oliver", "Line", "Rasmus", "Maja", "Ørjan" }
local last = { "Hansen", "Jensen", "Nielsen", "Pedersen", "Andersen", "Christensen",
               "Larsen", "Sørensen", "Rasmussen", "Jørgensen", "Petersen", "Madsen" }
local features = { "chat", "poll", "q-and-a", "screen-share", "reactions", "handout" }

local template = table.concat({
  '{"event":"webinar.attended","type":"track","message_id":"m-%d-%d",',
  '"timestamp":"2024-05-14T09:%02d:%02d.%03dZ",',
  '"webinar":{"id":"wb-%d","title":"Quarterly product update for customers in the Nordics","language":"da"},',
  '"participant":{"name":"%s %s","email":"%s.%s.%d.%d@example.dk","ip":"%d.%d.%d.%d",',
  '"role":"attendee","registered_via":"landing-page"},',
  '"context":{"user_agent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",',
  '"country":"DK","screen":"1920x1080","locale":"da-DK","timezone":"Europe/Copenhagen",',
  '"library":{"name":"webinar-sdk","version":"3.4.1"}},',
  '"properties":{"duration_s":%d,"feature":"%s","poll_id":"poll-%d","answer":"B",',
  '"questions_asked":%d,"camera_on":true,"microphone_on":false,"reactions":%d,',
  '"attention_score":0.87,"device_id":"d-%08x-%04x"},',
  '"internal":{"debug":"edge=cph-2 build=2024.05.1 shard=%d","trace_id":"%016x"}}',
})

local headers = { ["Content-Type"] = "application/json" }

function setup(thread)
  -- a distinct seed per wrk thread
  seed = seed + 1
  thread:set("seed", seed)
end

function init(args)
  math.randomseed(seed * 7919 + os.time())
  counter = math.random(1, 1000000000)
end

function request()
  counter = counter + 1
  local n = counter
  local f = first[n % #first + 1]
  local l = last[(n * 7) % #last + 1]
  local body = string.format(template,
    seed, n,
    n % 60, (n * 13) % 60, n % 1000,
    n % 500,
    f, l, f:lower(), l:lower(), seed, n,
    10 + n % 200, math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256,
    n % 3600, features[n % #features + 1], n % 40,
    n % 5, n % 17,
    n % 4294967296, n % 65536,
    n % 16, n)
  return wrk.format("POST", nil, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d " ..
    "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
