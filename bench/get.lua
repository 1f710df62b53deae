-- get.lua — plain GET of the URL given to wrk (headers come from -H), with the
-- machine-readable report of report.lua. No request()/response() hooks, so
-- wrk sends one pre-built request per connection and parses nothing in Lua.
--   wrk -t2 -c256 -d10s --latency -s bench/get.lua -H "auth: TOKEN" URL
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")
