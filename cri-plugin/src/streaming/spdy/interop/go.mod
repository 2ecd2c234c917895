module berth.invalid/spdy-interop

go 1.19

require github.com/moby/spdystream v0.5.0
