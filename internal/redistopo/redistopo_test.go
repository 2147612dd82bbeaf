package redistopo_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/redistopo"
)

// TestTLSACL checks that the TLS server answers the restricted user under
// its prefix and refuses it everything else. (Cluster and Sentinel are
// exercised by module/topology_test.go.)
func TestTLSACL(t *testing.T) {
	ctx := context.Background()
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
	if err := cl.Do(ctx, "config", "set", "save", "").Err(); err == nil {
		t.Fatal("CONFIG SET allowed")
	}
}
