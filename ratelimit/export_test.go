package ratelimit

// NewPipelinedRedis is NewRedis with Batch set and each batch sent as a
// pipeline of one script run per request, as NewRedis does on a cluster
// client, whatever the client: limitertest's batch=pipeline mode on a
// single Redis.
func NewPipelinedRedis(c RedisClient, opts RedisOptions) *Redis {
	opts.Batch = true
	r := NewRedis(c, opts)
	r.multiKey = false
	return r
}
