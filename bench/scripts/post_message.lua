-- POST /api/v1/conversations/{id}/messages spread over a pool of conversations:
-- `wrk ... -s post_message.lua URL -- <token> <conversation ids file> <bodies file>`.
-- Both files hold one item a line (a conversation id; a ready JSON body). Each request takes the
-- next conversation round-robin, so the 32 in-flight posts hit 32 different conversations (no
-- queueing on one conversation's row lock) and every conversation's history grows evenly.
local paths = {}
local bodies = {}
local counter = 0
local threads = 0

-- Runs in the main Lua state once per thread before init(): gives each thread its own offset.
function setup(thread)
   thread:set("offset", threads * 7919)
   threads = threads + 1
end

function init(args)
   for line in io.lines(args[2]) do
      paths[#paths + 1] = "/api/v1/conversations/" .. line .. "/messages"
   end
   for line in io.lines(args[3]) do
      bodies[#bodies + 1] = line
   end
   wrk.method = "POST"
   wrk.headers["Authorization"] = "Bearer " .. args[1]
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["Accept"] = "application/json"
   -- Several threads would otherwise walk the pool in lock-step.
   counter = offset or 0
end

function request()
   counter = counter + 1
   local path = paths[counter % #paths + 1]
   -- A different stride for the question, so a conversation does not hear the same one twice.
   local body = bodies[math.floor(counter / #paths) % #bodies + 1]
   return wrk.format(nil, path, nil, body)
end
