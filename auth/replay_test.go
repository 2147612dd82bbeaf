package auth

import (
	"context"
	"crypto/sha256"
	"errors"
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
		if got := g.remember(rkey(s.key), 10*time.Second, now.Add(s.at)); got != s.want {
			t.Fatalf("step %d: fresh = %v, want %v", i, got, s.want)
		}
	}
	fresh, err := g.Remember(context.Background(), rkey(99), time.Minute)
	if err != nil || !fresh {
		t.Fatalf("Remember: %v %v", fresh, err)
	}
}

func TestMemoryReplayGuardBound(t *testing.T) {
	g := NewMemoryReplayGuard(replayShards * 4)
	for i := 0; i < 10000; i++ {
		g.remember(rkey(i), time.Hour, testNow)
	}
	if n := g.Len(); n > replayShards*4 {
		t.Fatalf("len %d over bound", n)
	}
	// The most recent key is still remembered.
	if g.remember(rkey(9999), time.Hour, testNow) {
		t.Fatal("newest key forgotten")
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

	// A cancelled context is an error wrapping ErrReplayStore, not a replay.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := g.Remember(cctx, rkey(3), time.Second); !errors.Is(err, ErrReplayStore) {
		t.Fatalf("cancelled: %v", err)
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
	_, err := g.Remember(context.Background(), rkey(2), time.Second)
	if !errors.Is(err, ErrReplayStore) {
		t.Fatalf("down: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
}
