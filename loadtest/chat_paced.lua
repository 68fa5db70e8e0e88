-- wrk script for the latency phase of loadtest/run.sh: the same request as
-- chat.lua, but every connection waits a think time before each request,
-- so 32 connections offer a fixed, modest load instead of running flat out
-- (at saturation p99 measures queueing for the shared cores, not the proxy).
--
-- PACE_MS (env, default 10) is the mean think time in ms. Each wait is drawn
-- uniformly from 0..2*PACE_MS: a constant wait would keep all connections
-- firing in lock-step bursts of 32, which is queueing again. wrk starts the
-- latency clock when the request is written, so the wait is not counted.

-- Load the request from chat.lua in this script's directory (or LT_BODY, the script of the
-- run's SHAPE), so it is defined once.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(os.getenv("LT_BODY") or (dir .. "chat.lua"))

local pace = tonumber(os.getenv("PACE_MS") or "10")
if pace == nil or pace < 0 then
   error("PACE_MS must be a number >= 0, got '" .. tostring(os.getenv("PACE_MS")) .. "'")
end
pace = math.floor(pace)

function delay()
   -- wrk wants whole milliseconds.
   return math.random(0, 2 * pace)
end
