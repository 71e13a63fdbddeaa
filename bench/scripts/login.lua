-- OAuth2 password grant in a loop (the Argon2 check):
-- `wrk ... -s login.lua URL -- <form-encoded body>`, e.g. "username=a%40b.c&password=...".
-- Python encodes the form, so this script needs no URL-escaping of its own.
function init(args)
   wrk.method = "POST"
   wrk.body = args[1]
   wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
   wrk.headers["Accept"] = "application/json"
end
