package redistopo_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/redistopo"
)

// TestTopologies starts each topology and checks a client reaches it.
func TestTopologies(t *testing.T) {
	ctx := context.Background()
	t.Run("cluster", func(t *testing.T) {
		c := redistopo.StartCluster(t)
		cl := c.Client()
		defer cl.Close()
		if err := cl.Set(ctx, "{kg}x", "1", 0).Err(); err != nil {
			t.Fatal(err)
		}
		m, r := c.Owner("{kg}x")
		if m == nil || r == nil {
			t.Fatalf("owner %v replica %v", m, r)
		}
	})
	t.Run("sentinel", func(t *testing.T) {
		s := redistopo.StartSentinel(t)
		cl := s.Client()
		defer cl.Close()
		if err := cl.Set(ctx, "x", "1", 0).Err(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("tls-acl", func(t *testing.T) {
		s := redistopo.StartTLS(t)
		cl := redis.NewClient(&redis.Options{Addr: s.Addr, Username: redistopo.ACLUser, Password: s.Password, TLSConfig: s.ClientTLS})
		defer cl.Close()
		if err := cl.Set(ctx, "keygate:x", "1", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if err := cl.Set(ctx, "other:x", "1", 0).Err(); err == nil {
			t.Fatal("write outside the prefix allowed")
		}
		if err := cl.FlushAll(ctx).Err(); err == nil {
			t.Fatal("FLUSHALL allowed")
		}
	})
}
