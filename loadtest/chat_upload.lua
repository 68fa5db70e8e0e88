-- wrk script for loadtest/run.sh, SHAPE=upload: a chat completion POST of 1 MiB (a long prompt,
-- or an image or audio clip sent inline), the same for every request.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local head = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"'
local tail = '"}],"max_tokens":16}'
wrk.body = head .. string.rep("a", 1048576 - #head - #tail) .. tail
