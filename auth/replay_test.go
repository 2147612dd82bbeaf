package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testredis"
)

func TestNeedsReplayCheck(t *testing.T) {
	cases := []struct {
		mode   ReplayMode
		method string
		nonce  bool
		want   bool
	}{
		{ReplayOn, "GET", false, false},
		{ReplayOn, "HEAD", false, false},
		{ReplayOn, "OPTIONS", false, false},
		{ReplayOn, "GET", true, true},
		{ReplayOn, "POST", false, true},
		{ReplayOn, "PUT", false, true},
		{ReplayOn, "PATCH", false, true},
		{ReplayOn, "DELETE", false, true},
		{"", "GET", false, false},
		{"", "POST", false, true},
		{ReplayAll, "GET", false, true},
		{ReplayAll, "HEAD", false, true},
		{ReplayOff, "POST", true, false},
		{ReplayOff, "GET", true, false},
	}
	for _, c := range cases {
		if got := NeedsReplayCheck(c.mode, c.method, c.nonce); got != c.want {
			t.Errorf("NeedsReplayCheck(%q, %s, %v) = %v, want %v", c.mode, c.method, c.nonce, got, c.want)
		}
	}
	if _, err := ParseReplayMode("maybe"); err == nil {
		t.Error("bad mode accepted")
	}
}

func rkey(i int) [32]byte { return sha256.Sum256([]byte(strconv.Itoa(i))) }

func TestMemoryReplayGuard(t *testing.T) {
	g := NewMemoryReplayGuard(1000)
	now := testNow
	steps := []struct {
		key  int
		at   time.Duration
		want bool
	}{
		{1, 0, true},
		{1, time.Second, false},        // replay
		{2, time.Second, true},         // another key
		{1, 9 * time.Second, false},    // still remembered
		{1, 10*time.Second + 1, true},  // expired: fresh again
		{1, 10*time.Second + 2, false}, // and remembered again
	}
	for i, s := range steps {
		if got, err := g.remember(rkey(s.key), 10*time.Second, now.Add(s.at)); got != s.want || err != nil {
			t.Fatalf("step %d: fresh = %v (%v), want %v", i, got, err, s.want)
		}
	}
	fresh, err := g.Remember(context.Background(), rkey(99), time.Minute)
	if err != nil || !fresh {
		t.Fatalf("Remember: %v %v", fresh, err)
	}
}

// TestMemoryReplayGuardBound: an unexpired key is never evicted, however
// many others arrive (issue 23: 16,584 signatures pushed a victim's entry
// out of its shard, and the replay then passed). A full guard refuses new
// keys with ErrReplayFull, still reports replays of held keys, and takes
// new keys again as soon as old ones expire or are forgotten.
func TestMemoryReplayGuardBound(t *testing.T) {
	const max = 1000
	g := NewMemoryReplayGuard(max)
	victim := rkey(-1)
	if fresh, err := g.remember(victim, time.Hour, testNow); !fresh || err != nil {
		t.Fatal(fresh, err)
	}
	full := 0
	for i := 0; i < 20*max; i++ {
		fresh, err := g.remember(rkey(i), 10*time.Minute, testNow.Add(time.Duration(i)))
		switch {
		case errors.Is(err, ErrReplayFull):
			full++
		case err != nil || !fresh:
			t.Fatalf("key %d: %v %v", i, fresh, err)
		}
		if n := g.Len(); n > max {
			t.Fatalf("len %d over the bound %d", n, max)
		}
	}
	if full != 20*max-(max-1) || g.Full() != int64(full) {
		t.Fatalf("%d refused as full (counted %d), want %d", full, g.Full(), 20*max-(max-1))
	}
	for _, k := range [][32]byte{victim, rkey(0), rkey(max - 2)} {
		if fresh, err := g.remember(k, time.Hour, testNow.Add(time.Minute)); fresh || err != nil {
			t.Fatalf("a held key is not reported as a replay when full: %v %v", fresh, err)
		}
	}
	// Forgetting frees a place at once.
	if err := g.Forget(context.Background(), rkey(5)); err != nil {
		t.Fatal(err)
	}
	if fresh, err := g.remember(rkey(-2), time.Hour, testNow.Add(time.Minute)); !fresh || err != nil {
		t.Fatalf("after forget: %v %v", fresh, err)
	}
	if fresh, _ := g.remember(rkey(5), time.Hour, testNow.Add(time.Minute)); fresh {
		t.Fatal("full again, yet took a new key")
	}
	// Once the 10-minute keys expire (in any shard), new keys fit again;
	// the hour-long victim is still remembered.
	later := testNow.Add(11 * time.Minute)
	if fresh, err := g.remember(rkey(-3), time.Hour, later); !fresh || err != nil {
		t.Fatalf("after expiry: %v %v", fresh, err)
	}
	for i := 0; i < max-3; i++ {
		if fresh, err := g.remember(rkey(100000+i), time.Hour, later); !fresh || err != nil {
			t.Fatalf("new key %d after expiry: %v %v", i, fresh, err)
		}
	}
	if _, err := g.remember(rkey(-4), time.Hour, later); !errors.Is(err, ErrReplayFull) {
		t.Fatalf("full again: %v", err)
	}
	if fresh, _ := g.remember(victim, time.Hour, later); fresh {
		t.Fatal("victim forgotten")
	}
}

// TestMemoryReplayGuardExpiryOrder: keys with different ttls (presigned
// URLs live longer) expire in time order, not in the order they came.
func TestMemoryReplayGuardExpiryOrder(t *testing.T) {
	g := NewMemoryReplayGuard(replayShards * 8)
	rng := rand.New(rand.NewPCG(1, 2))
	ttl := map[[32]byte]time.Duration{}
	for i := 0; i < 2000; i++ {
		k := rkey(i)
		d := time.Duration(1+rng.IntN(600)) * time.Second
		if fresh, err := g.remember(k, d, testNow); err == nil && fresh {
			ttl[k] = d
		}
	}
	for at := time.Duration(0); at <= 607*time.Second; at += 7 * time.Second {
		now := testNow.Add(at)
		for k, d := range ttl {
			fresh, err := g.remember(k, d, now)
			if err != nil {
				t.Fatal(err)
			}
			if want := at >= d; fresh != want {
				t.Fatalf("key with ttl %v at %v: fresh %v", d, at, fresh)
			}
			if fresh {
				delete(ttl, k)
				_ = g.Forget(context.Background(), k)
			}
		}
	}
	if len(ttl) != 0 || g.Len() != 0 {
		t.Fatalf("%d keys never expired, %d held", len(ttl), g.Len())
	}
}

func TestMemoryReplayGuardConcurrent(t *testing.T) {
	g := NewMemoryReplayGuard(1 << 16)
	var fresh atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				if ok, _ := g.Remember(context.Background(), rkey(i), time.Minute); ok {
					fresh.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if fresh.Load() != 1000 {
		t.Fatalf("fresh = %d, want exactly 1000", fresh.Load())
	}
}

func TestRedisReplayGuard(t *testing.T) {
	client, prefix := testredis.Client(t)
	g := NewRedisReplayGuard(client, prefix, time.Second)
	ctx := context.Background()
	k := rkey(1)
	fresh, err := g.Remember(ctx, k, 200*time.Millisecond)
	if err != nil || !fresh {
		t.Fatalf("first: %v %v", fresh, err)
	}
	fresh, err = g.Remember(ctx, k, 200*time.Millisecond)
	if err != nil || fresh {
		t.Fatalf("replay: %v %v", fresh, err)
	}
	name := g.key(k)
	if ttl := client.PTTL(ctx, name).Val(); ttl <= 0 || ttl > 200*time.Millisecond {
		t.Fatalf("ttl %v on %s", ttl, name)
	}
	time.Sleep(300 * time.Millisecond)
	fresh, err = g.Remember(ctx, k, time.Second)
	if err != nil || !fresh {
		t.Fatalf("after expiry: %v %v", fresh, err)
	}

	// Concurrent callers: exactly one wins.
	var wins atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, err := g.Remember(ctx, rkey(2), time.Second); err == nil && ok {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("wins = %d", wins.Load())
	}

	// Forget drops a key: it is fresh again.
	if err := g.Forget(ctx, rkey(2)); err != nil {
		t.Fatal(err)
	}
	if fresh, err := g.Remember(ctx, rkey(2), time.Second); err != nil || !fresh {
		t.Fatalf("after forget: %v %v", fresh, err)
	}

	// A cancelled context is an error wrapping ErrReplayStore, not a replay.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if fresh, err := g.Remember(cctx, rkey(3), time.Second); !errors.Is(err, ErrReplayStore) || fresh {
		t.Fatalf("cancelled: %v %v", fresh, err)
	}
	if err := g.Forget(cctx, rkey(2)); !errors.Is(err, ErrReplayStore) {
		t.Fatalf("cancelled forget: %v", err)
	}
}

func TestRedisReplayGuardDown(t *testing.T) {
	srv := testredis.StartServer(t)
	g := NewRedisReplayGuard(srv.Client(), "kg:", 100*time.Millisecond)
	if ok, err := g.Remember(context.Background(), rkey(1), time.Second); err != nil || !ok {
		t.Fatalf("up: %v %v", ok, err)
	}
	srv.Stop()
	start := time.Now()
	fresh, err := g.Remember(context.Background(), rkey(2), time.Second)
	if !errors.Is(err, ErrReplayStore) || fresh {
		t.Fatalf("down: %v %v (a Redis error must never pass as fresh)", fresh, err)
	}
	if err := g.Forget(context.Background(), rkey(1)); !errors.Is(err, ErrReplayStore) {
		t.Fatalf("forget down: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
}
