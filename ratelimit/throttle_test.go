package ratelimit

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

func newTestThrottle(t testing.TB, r rate.Limit, burst, size int) *IPThrottle {
	t.Helper()
	th, err := NewIPThrottle(IPThrottleOptions{Rate: r, Burst: burst, Size: size})
	if err != nil {
		t.Fatal(err)
	}
	return th
}

// v4 returns the i-th address of 10.0.0.0/8.
func v4(i int) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], 10<<24|uint32(i))
	return netip.AddrFrom4(b)
}

// checkInvariants verifies that every shard's map and list agree, that no
// shard exceeds its share and that Len counts what the maps hold.
func checkInvariants(t *testing.T, th *IPThrottle) {
	t.Helper()
	total := 0
	for i := range th.shards {
		s := &th.shards[i]
		s.mu.Lock()
		n := 0
		for e := s.lru.next; e != &s.lru; e = e.next {
			if s.m[e.key] != e {
				t.Errorf("shard %d: listed entry %v not in the map", i, e.key)
			}
			if e.next.prev != e {
				t.Errorf("shard %d: broken list at %v", i, e.key)
			}
			n++
		}
		if n != len(s.m) {
			t.Errorf("shard %d: list holds %d, map %d", i, n, len(s.m))
		}
		if len(s.m) > th.perShard {
			t.Errorf("shard %d holds %d entries, more than its %d", i, len(s.m), th.perShard)
		}
		total += len(s.m)
		s.mu.Unlock()
	}
	if total != th.Len() {
		t.Errorf("Len() = %d, maps hold %d", th.Len(), total)
	}
	if total > th.Size() {
		t.Errorf("%d entries, more than Size() = %d", total, th.Size())
	}
}

func TestThrottleFailThenBlocked(t *testing.T) {
	th := newTestThrottle(t, rate.Every(6*time.Second), 3, 0) // 10/min, burst 3
	now := time.Unix(1_700_000_000, 0)
	ip := netip.MustParseAddr("192.0.2.7")
	other := netip.MustParseAddr("192.0.2.8")

	if _, blocked := th.Blocked(ip, now); blocked || th.Len() != 0 {
		t.Fatalf("fresh throttle blocks or holds %d entries", th.Len())
	}
	for i := range 3 {
		if _, blocked := th.Blocked(ip, now); blocked {
			t.Fatalf("blocked after %d failures, burst 3", i)
		}
		if !th.Fail(ip, now) {
			t.Fatalf("failure %d not within the burst", i+1)
		}
	}
	wait, blocked := th.Blocked(ip, now)
	if !blocked || wait != 6*time.Second {
		t.Fatalf("after the burst: blocked %v, retry after %v; want true, 6s", blocked, wait)
	}
	// Blocked consumes nothing; a failure while blocked takes nothing.
	for range 5 {
		th.Blocked(ip, now)
	}
	if th.Fail(ip, now) {
		t.Fatal("a failure while blocked was within the burst")
	}
	if wait, _ := th.Blocked(ip, now.Add(2*time.Second)); wait != 4*time.Second {
		t.Fatalf("2s later: retry after %v, want 4s", wait)
	}
	// Another client is unaffected.
	if _, blocked := th.Blocked(other, now); blocked {
		t.Fatal("another address is blocked")
	}
	// One event refills after 6s: one more failure is allowed, not two.
	later := now.Add(6 * time.Second)
	if _, blocked := th.Blocked(ip, later); blocked {
		t.Fatal("still blocked after the refill interval")
	}
	th.Fail(ip, later)
	if _, blocked := th.Blocked(ip, later); !blocked {
		t.Fatal("not blocked after the refilled event was used")
	}
	// Once the bucket is full again the entry is dropped on the next check.
	full := later.Add(time.Minute)
	if _, blocked := th.Blocked(ip, full); blocked {
		t.Fatal("blocked after a full refill")
	}
	if th.Len() != 0 {
		t.Fatalf("Len() = %d after the only bucket refilled, want 0", th.Len())
	}
}

func TestThrottleAllow(t *testing.T) {
	th := newTestThrottle(t, 20, 5, 0)
	now := time.Unix(1_700_000_000, 0)
	ip := netip.MustParseAddr("2001:db8::1")
	for i := range 5 {
		if _, ok := th.Allow(ip, now); !ok {
			t.Fatalf("request %d refused within the burst", i+1)
		}
	}
	wait, ok := th.Allow(ip, now)
	if ok || wait != 50*time.Millisecond {
		t.Fatalf("request past the burst: ok %v, retry after %v; want false, 50ms", ok, wait)
	}
	if _, ok := th.Allow(ip, now.Add(50*time.Millisecond)); !ok {
		t.Fatal("refused after the refill interval")
	}
}

func TestThrottleKey(t *testing.T) {
	th := newTestThrottle(t, 1, 1, 0)
	now := time.Unix(1_700_000_000, 0)
	for _, c := range []struct {
		a, b string
		same bool
	}{
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", true}, // one /64
		{"2001:db8:1:2::1", "2001:db8:1:3::1", false},                 // the next /64
		{"fe80::1%eth0", "fe80::2%eth1", true},                        // zones are ignored
		{"::ffff:192.0.2.1", "192.0.2.1", true},                       // IPv4-mapped is IPv4
		{"192.0.2.1", "192.0.2.2", false},                             // IPv4: the address
	} {
		a, b := netip.MustParseAddr(c.a), netip.MustParseAddr(c.b)
		if got := ThrottleKey(a) == ThrottleKey(b); got != c.same {
			t.Errorf("%s and %s share a key: %v, want %v", c.a, c.b, got, c.same)
		}
		th.Fail(a, now)
		_, blocked := th.Blocked(b, now)
		if blocked != c.same {
			t.Errorf("a failure of %s blocks %s: %v, want %v", c.a, c.b, blocked, c.same)
		}
		now = now.Add(time.Hour) // everything refills
	}
}

// TestThrottleEvictionBound: a spray from many more addresses than Size
// keeps at most Size entries, and the most recent failers are kept.
func TestThrottleEvictionBound(t *testing.T) {
	for _, size := range []int{1, 5, 64, 1000, 4096} {
		th := newTestThrottle(t, rate.Every(time.Minute), 2, size)
		if th.Size() > size || th.Size() < size/2 {
			t.Fatalf("size %d: Size() = %d", size, th.Size())
		}
		now := time.Unix(1_700_000_000, 0)
		for i := range 20 * size {
			th.Fail(v4(i), now)
			if th.Len() > th.Size() {
				t.Fatalf("size %d: %d entries after %d addresses", size, th.Len(), i+1)
			}
		}
		checkInvariants(t, th)
		// A client that keeps failing is seen recently, so it is kept.
		hot := netip.MustParseAddr("198.51.100.1")
		for i := range 10 * size {
			th.Fail(hot, now)
			th.Fail(v4(1_000_000+i), now)
		}
		if _, blocked := th.Blocked(hot, now); !blocked && size > 1 {
			t.Errorf("size %d: the address failing all along was evicted", size)
		}
		checkInvariants(t, th)
	}
}

// TestThrottleEvictsLeastRecentlySeen within one shard.
func TestThrottleEvictsLeastRecentlySeen(t *testing.T) {
	th := newTestThrottle(t, rate.Every(time.Hour), 1, 3) // one shard of 3
	if len(th.shards) != 1 {
		t.Fatalf("%d shards for size 3", len(th.shards))
	}
	now := time.Unix(1_700_000_000, 0)
	a, b, c, d := v4(1), v4(2), v4(3), v4(4)
	th.Fail(a, now)
	th.Fail(b, now)
	th.Fail(c, now)
	th.Fail(a, now) // a is now the most recently seen; b the least
	th.Fail(d, now) // evicts b
	for ip, want := range map[netip.Addr]bool{a: true, b: false, c: true, d: true} {
		if _, blocked := th.Blocked(ip, now); blocked != want {
			t.Errorf("%v blocked %v, want %v", ip, blocked, want)
		}
	}
	checkInvariants(t, th)
}

func TestThrottleConcurrent(t *testing.T) {
	th := newTestThrottle(t, 1000, 10, 256)
	hot := netip.MustParseAddr("203.0.113.9")
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowedHot := 0
	start := time.Unix(1_700_000_000, 0)
	for g := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			n := 0
			for i := range 5000 {
				now := start // one instant: the hot bucket does not refill
				ip := v4(r.IntN(2000))
				switch i % 4 {
				case 0:
					th.Blocked(ip, now)
				case 1:
					th.Fail(ip, now)
				case 2:
					th.Allow(ip, now)
				case 3:
					if th.Fail(hot, now) {
						n++
					}
				}
			}
			mu.Lock()
			allowedHot += n
			mu.Unlock()
		})
	}
	wg.Wait()
	checkInvariants(t, th)
	// The hot address may have been evicted and started over, but never
	// more than once per eviction; with 8×1250 failures at one instant and
	// burst 10 it gets far fewer than all of them.
	if allowedHot < 10 || allowedHot > 10*1250 {
		t.Fatalf("hot address: %d failures within its budget", allowedHot)
	}
}

func TestThrottleBlockedAllocs(t *testing.T) {
	th := newTestThrottle(t, 1, 1, 0)
	now := time.Unix(1_700_000_000, 0)
	for i := range 100 {
		th.Fail(v4(i), now)
	}
	blocked, clean := v4(5), netip.MustParseAddr("2001:db8::5")
	if n := testing.AllocsPerRun(1000, func() {
		th.Blocked(blocked, now)
		th.Blocked(clean, now)
	}); n != 0 {
		t.Fatalf("Blocked allocates %v times", n)
	}
	// A known address's Fail and Allow do not allocate either.
	if n := testing.AllocsPerRun(1000, func() {
		th.Fail(blocked, now)
		th.Allow(blocked, now)
	}); n != 0 {
		t.Fatalf("Fail/Allow of a known address allocate %v times", n)
	}
}

func TestNewIPThrottleValidates(t *testing.T) {
	for _, o := range []IPThrottleOptions{
		{Rate: 0, Burst: 1},
		{Rate: -1, Burst: 1},
		{Rate: rate.Inf, Burst: 1},
		{Rate: 1, Burst: 0},
		{Rate: 1, Burst: 1, Size: -1},
	} {
		if _, err := NewIPThrottle(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]rate.Limit{
		"60/1m":  1,
		"10/1m":  rate.Limit(10.0 / 60),
		"20/1s":  20,
		"5/s":    5,
		"100/h":  rate.Limit(100.0 / 3600),
		"1/10s":  0.1,
		"0.5":    0.5,
		"20":     20,
		"3/1.5s": 2,
	} {
		got, err := ParseRate(in)
		if err != nil || float64(got-want) > 1e-12 || float64(want-got) > 1e-12 {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "0", "-1/s", "0/1m", "10/", "10/0s", "10/-1m", "10/lightyear", "NaN", "Inf", "1e400", "10/1m/2"} {
		if r, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) = %v, want an error", in, r)
		}
	}
}

// BenchmarkThrottle: Blocked is on every gateway request (clean: the
// address has no entry, among 10000 that have); Fail on every failure;
// Allow on every token request.
func BenchmarkThrottle(b *testing.B) {
	th := newTestThrottle(b, 1, 100, 0)
	now := time.Unix(1_700_000_000, 0)
	for i := range 10_000 {
		th.Fail(v4(i), now)
	}
	clean := netip.MustParseAddr("192.0.2.1")
	b.Run("blocked-empty", func(b *testing.B) {
		empty := newTestThrottle(b, 1, 100, 0)
		b.ReportAllocs()
		for b.Loop() {
			empty.Blocked(clean, now)
		}
	})
	b.Run("blocked-clean", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				th.Blocked(clean, now)
			}
		})
	})
	b.Run("blocked-known", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := rand.IntN(10_000)
			for pb.Next() {
				th.Blocked(v4(i%10_000), now)
				i++
			}
		})
	})
	b.Run("fail", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := rand.IntN(10_000)
			for pb.Next() {
				th.Fail(v4(i%10_000), now)
				i++
			}
		})
	})
}
