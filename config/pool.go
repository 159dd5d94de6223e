package config

// poolLimits checks [relay] pool, idle_timeout, idle_check, rate_limit and
// rate_delta (they may come from the url's query too: the key named is
// then relay.url).
func (x *relayResolver) poolLimits() {
	r, c := x.r, x.c
	positive(c, x.key("idle_timeout"), r.IdleTimeout)
	positive(c, x.key("idle_check"), r.IdleCheck)
	atLeast(c, x.key("rate_limit"), r.RateLimit, 0)
	positive(c, x.key("rate_delta"), r.RateDelta)
}
