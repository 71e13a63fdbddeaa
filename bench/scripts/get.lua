-- GET with a bearer token: `wrk ... -s get.lua URL -- <token>`.
-- The header is set in init() and no request() is defined, so wrk builds the request once and
-- keeps its fast static path: the load generator costs the same for every GET case.
function init(args)
   if args[1] and args[1] ~= "" then
      wrk.headers["Authorization"] = "Bearer " .. args[1]
   end
   wrk.headers["Accept"] = "application/json"
end
