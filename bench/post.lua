-- wrk: POST a small JSON callback to a new key each time (keys cycle per thread).
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", "/callbacks/bench-" .. n, {["content-type"] = "application/json"}, '{"status":"done"}')
end
