package ratelimit

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// t0 is aligned on a 10 s bucket boundary of the 2-minute window.
var t0 = time.Unix(1_700_000_000, 0) // 1_700_000_000_000 ms is a multiple of 10_000

func newTestLocal(t testing.TB) *Local {
	l := NewLocal(LocalOptions{})
	t.Cleanup(func() { l.Close() })
	return l
}

func TestLocalSteps(t *testing.T) {
	const w = 2 * time.Minute // 12 buckets of 10 s
	type step struct {
		at        time.Duration // since t0
		key       string
		allowed   bool
		remaining int64
		reset     time.Duration
		retry     time.Duration
	}
	tests := []struct {
		name  string
		limit int64
		steps []step
	}{
		{
			name:  "quota returns as the window slides",
			limit: 2,
			steps: []step{
				{at: 0, allowed: true, remaining: 1, reset: 130 * time.Second},
				{at: 15 * time.Second, allowed: true, remaining: 0, reset: 115 * time.Second},
				{at: 20 * time.Second, allowed: false, remaining: 0, reset: 110 * time.Second, retry: 110 * time.Second},
				// Bucket 0 is counted until 130 s (W plus one bucket).
				{at: 129*time.Second + 999*time.Millisecond, allowed: false, remaining: 0, reset: time.Millisecond, retry: time.Millisecond},
				{at: 130 * time.Second, allowed: true, remaining: 0, reset: 10 * time.Second},
				{at: 135 * time.Second, allowed: false, remaining: 0, reset: 5 * time.Second, retry: 5 * time.Second},
				{at: 140 * time.Second, allowed: true, remaining: 0, reset: 120 * time.Second},
			},
		},
		{
			name:  "no burst across a window boundary",
			limit: 3,
			steps: []step{
				// L at the very end of one window (bucket 11, counted until 240 s)...
				{at: 119 * time.Second, allowed: true, remaining: 2, reset: 121 * time.Second},
				{at: 119*time.Second + 500*time.Millisecond, allowed: true, remaining: 1, reset: 120*time.Second + 500*time.Millisecond},
				{at: 119*time.Second + 900*time.Millisecond, allowed: true, remaining: 0, reset: 120*time.Second + 100*time.Millisecond},
				// ...then the next window starts: still refused.
				{at: 120 * time.Second, allowed: false, remaining: 0, reset: 120 * time.Second, retry: 120 * time.Second},
				{at: 121 * time.Second, allowed: false, remaining: 0, reset: 119 * time.Second, retry: 119 * time.Second},
				{at: 239*time.Second + 999*time.Millisecond, allowed: false, remaining: 0, reset: time.Millisecond, retry: time.Millisecond},
				{at: 240 * time.Second, allowed: true, remaining: 2, reset: 130 * time.Second},
			},
		},
		{
			name:  "rejected requests do not consume quota",
			limit: 1,
			steps: []step{
				{at: 0, allowed: true, remaining: 0, reset: 130 * time.Second},
				{at: 1 * time.Second, allowed: false, reset: 129 * time.Second, retry: 129 * time.Second},
				{at: 60 * time.Second, allowed: false, reset: 70 * time.Second, retry: 70 * time.Second},
				{at: 129 * time.Second, allowed: false, reset: time.Second, retry: time.Second},
				// Every rejection above left nothing behind.
				{at: 130 * time.Second, allowed: true, remaining: 0, reset: 130 * time.Second},
			},
		},
		{
			name:  "retry waits for enough buckets when several hold requests",
			limit: 3,
			steps: []step{
				{at: 0, allowed: true, remaining: 2, reset: 130 * time.Second},
				{at: 10 * time.Second, allowed: true, remaining: 1, reset: 120 * time.Second},
				{at: 20 * time.Second, allowed: true, remaining: 0, reset: 110 * time.Second},
				{at: 30 * time.Second, allowed: false, reset: 100 * time.Second, retry: 100 * time.Second},
				{at: 130 * time.Second, allowed: true, remaining: 0, reset: 10 * time.Second},
			},
		},
		{
			name:  "different keys are independent",
			limit: 1,
			steps: []step{
				{at: 0, key: "{t:a}", allowed: true, reset: 130 * time.Second},
				{at: 0, key: "{t:b}", allowed: true, reset: 130 * time.Second},
				{at: 1 * time.Second, key: "{t:a}", allowed: false, reset: 129 * time.Second, retry: 129 * time.Second},
				{at: 1 * time.Second, key: "{u:a}", allowed: true, reset: 129 * time.Second},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newTestLocal(t)
			for i, s := range tt.steps {
				key := s.key
				if key == "" {
					key = "{t:u}"
				}
				d, err := l.allow(key, tt.limit, w, t0.Add(s.at))
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				want := Decision{Allowed: s.allowed, Limit: tt.limit, Remaining: s.remaining, Reset: s.reset, RetryAfter: s.retry}
				if d != want {
					t.Errorf("step %d at %v: got %+v, want %+v", i, s.at, d, want)
				}
			}
		})
	}
}

// TestLocalWindowProperty drives random traffic and checks the two promises
// of the package doc: at most L accepted in any interval one window long,
// and a rejection only when L were accepted within the last W plus one
// bucket.
func TestLocalWindowProperty(t *testing.T) {
	const (
		w     = 12 * time.Second // 1 s buckets
		limit = 20
	)
	l := newTestLocal(t)
	rng := rand.New(rand.NewPCG(1, 2))
	var accepted []time.Time
	at := t0
	for i := 0; i < 20000; i++ {
		at = at.Add(time.Duration(rng.ExpFloat64() * float64(150*time.Millisecond)))
		d, err := l.allow("{t:u}", limit, w, at)
		if err != nil {
			t.Fatal(err)
		}
		// Count accepted requests in (at-W-s, at] and (at-W, at].
		var inW, inWs int
		for j := len(accepted) - 1; j >= 0 && at.Sub(accepted[j]) < w+time.Second; j-- {
			inWs++
			if at.Sub(accepted[j]) < w {
				inW++
			}
		}
		if d.Allowed {
			if inW+1 > limit {
				t.Fatalf("request %d at %v accepted with %d already accepted in the last window", i, at.Sub(t0), inW)
			}
			accepted = append(accepted, at)
		} else if inWs < limit {
			t.Fatalf("request %d at %v rejected with only %d accepted in the last window plus one bucket", i, at.Sub(t0), inWs)
		}
		if d.Remaining < 0 || d.Remaining > limit {
			t.Fatalf("remaining %d out of range", d.Remaining)
		}
	}
	if len(accepted) < 1000 {
		t.Fatalf("only %d accepted: traffic too light to test anything", len(accepted))
	}
}

func TestLocalConcurrentExact(t *testing.T) {
	l := newTestLocal(t)
	const n, limit = 200, 50
	var allowed atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			d, err := l.Allow(context.Background(), Key("acme", "42"), limit, 2*time.Minute)
			if err != nil {
				t.Error(err)
				return
			}
			if d.Allowed {
				allowed.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if got := allowed.Load(); got != limit {
		t.Fatalf("allowed %d of %d concurrent requests, want exactly %d", got, n, limit)
	}
}

func TestLocalSweep(t *testing.T) {
	l := newTestLocal(t)
	const w = 2 * time.Minute
	for _, k := range []string{"{t:a}", "{t:b}"} {
		if _, err := l.allow(k, 5, w, t0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.allow("{t:c}", 5, w, t0.Add(60*time.Second)); err != nil {
		t.Fatal(err)
	}
	l.sweep(t0.Add(129 * time.Second))
	if got := l.len(); got != 3 {
		t.Fatalf("after sweep inside the window: %d keys, want 3", got)
	}
	l.sweep(t0.Add(130 * time.Second))
	if got := l.len(); got != 1 {
		t.Fatalf("after a and b left the window: %d keys, want 1", got)
	}
	l.sweep(t0.Add(190 * time.Second))
	if got := l.len(); got != 0 {
		t.Fatalf("after every window ended: %d keys, want 0", got)
	}
}

func TestLocalEdgeCases(t *testing.T) {
	l := newTestLocal(t)
	d, err := l.allow("{t:u}", 0, time.Minute, t0)
	if err != nil || d.Allowed || d.RetryAfter != time.Minute {
		t.Errorf("limit 0: %+v, %v; want rejected with RetryAfter = window", d, err)
	}
	if _, err := l.allow("{t:u}", 1, 5*time.Millisecond, t0); err == nil {
		t.Error("window shorter than one millisecond per bucket: want an error")
	}
	// A different window for the same key starts afresh.
	if d, _ := l.allow("{t:w}", 1, time.Minute, t0); !d.Allowed {
		t.Fatal("first request refused")
	}
	if d, _ := l.allow("{t:w}", 1, time.Minute, t0); d.Allowed {
		t.Fatal("second request in the same window allowed")
	}
	if d, _ := l.allow("{t:w}", 1, 2*time.Minute, t0); !d.Allowed {
		t.Fatal("after the window changed: refused")
	}
	// A clock that steps back keeps counting conservatively.
	if d, _ := l.allow("{t:back}", 2, time.Minute, t0.Add(time.Minute)); !d.Allowed {
		t.Fatal("first request refused")
	}
	if d, _ := l.allow("{t:back}", 2, time.Minute, t0); !d.Allowed {
		t.Fatal("second request (clock went back) refused")
	}
	if d, _ := l.allow("{t:back}", 2, time.Minute, t0); d.Allowed {
		t.Fatal("third request allowed over the limit after the clock went back")
	}
}

func TestKey(t *testing.T) {
	tests := []struct{ tenant, user, want string }{
		{"acme", "42", "{acme:42}"},
		{"acme", "a:b", "{acme:a:b}"},
		{"a:b", "c", "{a%3Ab:c}"},
		{"a", "b:c", "{a:b:c}"},
		{"50%", "x", "{50%25:x}"},
		{"", "", "{:}"},
	}
	for _, tt := range tests {
		if got := Key(tt.tenant, tt.user); got != tt.want {
			t.Errorf("Key(%q, %q) = %q, want %q", tt.tenant, tt.user, got, tt.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = Key("acme", "1234567") }); n > 1 {
		t.Errorf("Key allocates %v times, want 1", n)
	}
}

func BenchmarkLocalAllowParallel(b *testing.B) {
	l := NewLocal(LocalOptions{})
	defer l.Close()
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = Key("acme", string(rune('a'+i%26))+string(rune('a'+i/26)))
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := rand.IntN(len(keys))
		for pb.Next() {
			if _, err := l.Allow(ctx, keys[i%len(keys)], 1_000_000, 2*time.Minute); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
