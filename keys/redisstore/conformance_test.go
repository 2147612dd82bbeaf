package redisstore_test

import (
	"testing"

	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/keys/redisstore"
	"github.com/keygate/keygate/keys/storetest"
)

// TestConformance runs the Store contract on the shared Redis, each store
// under its own prefix.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) keys.Store {
		client, prefix := testredis.Client(t)
		s := redisstore.NewStore(client, redisstore.Options{Prefix: prefix, Timeout: testTimeout}, keys.StoreOptions{})
		t.Cleanup(func() { s.Close() })
		return s
	})
}
