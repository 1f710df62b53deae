-- report.lua — wrk done() hook shared by the bench/*.lua scripts: prints one
-- machine-readable line that bench/api_bench.py parses ("WRK_JSON {...}").
-- Latency is in microseconds; errors are wrk's counters (status = responses
-- with a status code > 399, the rest are socket errors).
function done(summary, latency, requests)
   local e = summary.errors
   local p = {}
   for _, q in ipairs({50, 75, 90, 99, 99.9}) do
      p[#p + 1] = string.format('"%s":%d', tostring(q), latency:percentile(q))
   end
   io.write(string.format(
      'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d},' ..
      '"latency_us":{"min":%d,"max":%d,"mean":%.1f,"stdev":%.1f,"percentiles":{%s}}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.timeout, e.status,
      latency.min, latency.max, latency.mean, latency.stdev, table.concat(p, ",")))
end
