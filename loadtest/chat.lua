-- wrk script for loadtest/run.sh: every request is the same small chat
-- completion POST; per-target headers (provider, key) come from wrk -H.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"This is a gateway load test; please say hello in five words."}],"max_tokens":16,"temperature":0}'
