-- post_plan_script.lua — every request creates a new plan script with a
-- unique name (POST /rest/plan-scripts), so a 409 (name taken) is an error.
--   wrk -t2 -c256 -d5s --latency -s bench/post_plan_script.lua \
--       -H "auth: TOKEN" -H "X-API-Version: 2020" URL/rest/plan-scripts -- BODY_FILE PREFIX
-- BODY_FILE holds the JSON body with the placeholder __BENCH_NAME__ where the
-- name goes (api_bench.py writes it); PREFIX makes names unique across runs.
-- Names are PREFIX-<thread>-<n>.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local next_id = 0
function setup(thread)
   thread:set("tid", next_id)
   next_id = next_id + 1
end

local head, tail, prefix
local n = 0

function init(args)
   local path = args[1] or error("usage: -- BODY_FILE PREFIX")
   prefix = (args[2] or "bench") .. "-" .. tostring(tid or 0) .. "-"
   local f = assert(io.open(path, "rb"))
   local body = f:read("*a")
   f:close()
   local i, j = body:find("__BENCH_NAME__", 1, true)
   assert(i, "BODY_FILE has no __BENCH_NAME__ placeholder")
   head, tail = body:sub(1, i - 1), body:sub(j + 1)
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
end

function request()
   n = n + 1
   return wrk.format("POST", nil, nil, head .. prefix .. n .. tail)
end
