package ratelimit_test

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/ratelimit"
	"github.com/keygate/keygate/ratelimit/limitertest"
)

// TestRedisSuite runs the limiter's suite on the test Redis (REDIS_URL), in
// every mode, the cluster's pipelined batches included.
func TestRedisSuite(t *testing.T) {
	limitertest.Run(t, limitertest.Env{
		Client: func(t *testing.T) (redis.UniversalClient, string) { return testredis.Client(t) },
		Other: func(t *testing.T) redis.UniversalClient {
			c := redis.NewClient(testredis.Options(t))
			t.Cleanup(func() { c.Close() })
			return c
		},
		Pipelined: ratelimit.NewPipelinedRedis,
	})
}
