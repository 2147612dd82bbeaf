package redisstore_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

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

// roundTrips counts the round trips (commands and pipelines) of a client.
type roundTrips struct{ n atomic.Int64 }

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// TestTouchLastUsedRoundTrips checks that a node's usage flush costs a few
// round trips per batch, not one per record: 500 users and keys used are
// written with at most a dozen.
func TestTouchLastUsedRoundTrips(t *testing.T) {
	client, prefix := testredis.Client(t)
	s := redisstore.NewStore(client, redisstore.Options{Prefix: prefix, Timeout: testTimeout}, keys.StoreOptions{})
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	if _, err := s.CreateTenant(ctx, keys.Tenant{ID: "acme", Name: "Acme"}, "test"); err != nil {
		t.Fatal(err)
	}
	h := keys.NewHasher(nil)
	var used []keys.Usage
	at := time.Now().UTC().Truncate(time.Millisecond)
	for i := range 500 {
		u, err := s.CreateUser(ctx, keys.User{Name: fmt.Sprintf("u%d", i), Type: keys.UserService, Role: keys.RoleMember, PrimaryTenant: "acme"}, "test")
		if err != nil {
			t.Fatal(err)
		}
		_, k := keys.NewAccessKey(h, u.ID, "acme", "k", at.Add(time.Hour))
		if _, err := s.CreateKey(ctx, k, "test"); err != nil {
			t.Fatal(err)
		}
		used = append(used, keys.Usage{UserID: u.ID, KeyID: k.ID, At: at})
	}
	hook := &roundTrips{}
	client.AddHook(hook)
	if err := s.TouchLastUsed(ctx, used); err != nil {
		t.Fatal(err)
	}
	if n := hook.n.Load(); n > 12 {
		t.Fatalf("%d round trips to record 500 uses", n)
	} else {
		t.Logf("%d round trips to record 500 uses", n)
	}
	last := used[len(used)-1]
	if k, err := s.GetKey(ctx, last.KeyID); err != nil || k.LastUsedAt == nil || !k.LastUsedAt.Equal(at) {
		t.Fatalf("key after the flush: %v, %v", k.LastUsedAt, err)
	}
}
