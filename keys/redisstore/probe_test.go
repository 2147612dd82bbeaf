package redisstore_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/keys/redisstore"
)

// splitClient writes (and publishes) through one server but subscribes on
// another: the situation of a subscription left on a master that a
// failover demoted, while the writes go to the new master.
type splitClient struct {
	redis.UniversalClient // the master: writes and probes
	sub                   *redis.Client
}

func (c splitClient) Subscribe(ctx context.Context, channels ...string) *redis.PubSub {
	return c.sub.Subscribe(ctx, channels...)
}

// TestProbeNeedsTheWritesNode: a subscription confirms only what reaches it
// from the node the writes go to. On a node that does not get them it never
// confirms and is dropped (Gap) within about two intervals; on a replica of
// that node (which gets its publishes through replication, in order) it
// confirms.
func TestProbeNeedsTheWritesNode(t *testing.T) {
	master := testredis.StartServer(t)
	other := testredis.StartServer(t)
	mc, oc := master.Client(), other.Client()
	ctx := context.Background()

	b := redisstore.New(splitClient{UniversalClient: mc, sub: oc}, redisstore.Options{Timeout: time.Second})
	r := newRecorder()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := b.Subscribe(sctx, r.listener()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.lost.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a subscription that does not get the master's publishes was not dropped")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if c := r.confirms(); len(c) > 0 {
		t.Fatalf("confirmed %v without receiving the master's publishes", c)
	}
	cancel()

	// The other server becomes a replica of the master: now the probes
	// arrive, through replication, and confirm.
	if err := mc.ConfigSet(ctx, "repl-diskless-sync-delay", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := oc.ReplicaOf(ctx, "127.0.0.1", strings.TrimPrefix(master.Addr, "127.0.0.1:")).Err(); err != nil {
		t.Fatal(err)
	}
	for {
		info, _ := oc.Info(ctx, "replication").Result()
		if strings.Contains(info, "master_link_status:up") {
			break
		}
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("replica did not sync: %s", info)
		}
		time.Sleep(20 * time.Millisecond)
	}
	r2 := newRecorder()
	sctx2, cancel2 := context.WithCancel(ctx)
	defer cancel2()
	if err := b.Subscribe(sctx2, r2.listener()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r2.waitConfirm(t, start)
	r2.checkConfirms(t)
}
