package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/keys/redisstore"
)

// waitCounter counts the WAIT commands a client sends.
type waitCounter struct{ n atomic.Int64 }

func (h *waitCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *waitCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if strings.EqualFold(cmd.Name(), "wait") {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h *waitCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestReplicaWait: without replicas an Update sends no WAIT; with one, an
// Update that wrote waits for it (and one that only read does not); when
// the replica does not confirm in time, the Update fails as unavailable.
func TestReplicaWait(t *testing.T) {
	ctx := context.Background()
	master := testredis.StartServer(t)
	client := master.Client()
	h := &waitCounter{}
	client.AddHook(h)
	s := redisstore.NewStore(client, redisstore.Options{Timeout: 100 * time.Millisecond}, keys.StoreOptions{})
	t.Cleanup(func() { s.Close() })
	create := func(name string) error {
		_, err := s.CreateTenant(ctx, keys.Tenant{ID: name, Name: name}, "test")
		return err
	}
	if err := create("alone"); err != nil {
		t.Fatal(err)
	}
	if n := h.n.Load(); n != 0 {
		t.Fatalf("%d WAITs without a replica", n)
	}

	// Full sync at once, not after the default 5 s delay.
	if err := client.ConfigSet(ctx, "repl-diskless-sync-delay", "0").Err(); err != nil {
		t.Fatal(err)
	}
	replica := testredis.StartServer(t)
	rc := replica.Client()
	if err := rc.ReplicaOf(ctx, "127.0.0.1", fmt.Sprint(master.Port)).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		// In sync, and acknowledging: after a diskless full sync the master
		// streams writes to the replica only after its first ACK (sent
		// once a second), and until then WAIT cannot succeed.
		info, _ := rc.Info(ctx, "replication").Result()
		if strings.Contains(info, "master_link_status:up") {
			client.Set(ctx, "kgtest:replica-probe", "1", time.Minute)
			if n, err := client.Do(ctx, "wait", 1, 100).Int(); err == nil && n == 1 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica did not sync: %s", info)
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.n.Store(0) // the sync check's own WAITs
	if err := create("replicated"); err != nil {
		t.Fatal(err)
	}
	if n := h.n.Load(); n != 1 {
		t.Fatalf("%d WAITs for one write with a replica, want 1", n)
	}
	// Acknowledged means on the replica (read right away, no waiting).
	if found, _ := rc.Keys(ctx, "keygate:{kg}:*replicated*").Result(); len(found) == 0 {
		t.Fatal("the acknowledged write is not on the replica")
	}
	if _, err := s.GetTenant(ctx, "replicated"); err != nil {
		t.Fatal(err)
	}
	if n := h.n.Load(); n != 1 {
		t.Fatalf("a read sent WAIT (%d in all)", n)
	}

	// A replica that does not answer: the write is not acknowledged.
	slept := make(chan error, 1)
	go func() {
		c := replica.Client()
		slept <- c.Do(context.Background(), "debug", "sleep", "1").Err()
	}()
	time.Sleep(50 * time.Millisecond)
	err := create("unconfirmed")
	if !errors.Is(err, keys.ErrUnavailable) {
		t.Fatalf("write with a silent replica: %v, want ErrUnavailable", err)
	}
	if err := <-slept; err != nil {
		t.Fatal(err)
	}
}
