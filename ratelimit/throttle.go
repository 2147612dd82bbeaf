package ratelimit

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// DefaultThrottleSize is IPThrottleOptions.Size when it is left unset: the
// number of client addresses an IPThrottle tracks at most (about 200 bytes
// each, so some 13 MB when full).
const DefaultThrottleSize = 1 << 16

// maxThrottleShards bounds the number of independently locked maps.
const maxThrottleShards = 64

// minPerShard is the smallest shard worth its own lock: small throttles
// use fewer shards so that each still holds this many addresses.
const minPerShard = 16

// IPThrottleOptions configures NewIPThrottle.
type IPThrottleOptions struct {
	// Rate refills each client's bucket, in events per second. Required.
	Rate rate.Limit
	// Burst is the bucket's size: how many events a client that has been
	// quiet may have in a row. Required.
	Burst int
	// Size is the number of client addresses tracked at most. Default:
	// DefaultThrottleSize.
	Size int
}

// IPThrottle is an in-process, per-client-address token bucket
// (golang.org/x/time/rate) with bounded memory, for throttling what a
// client must not do often: failed authentications, token mints.
//
// Clients are counted by ThrottleKey of their address: an IPv4 address as
// it is, an IPv6 address by its /64 prefix.
//
// Memory is bounded: the addresses live in up to 64 shards, each a map
// with a least-recently-seen list and at most Size/shards entries. A new
// address in a full shard evicts the one seen least recently (by Fail or
// Allow; Blocked does not count as seen), which forgets its bucket: under
// a spray from more addresses than Size, an evicted address may start over
// with a full burst. An entry whose bucket has refilled holds nothing that
// a missing entry would not, so such entries are dropped when met; there
// is no background goroutine and nothing to close.
//
// An IPThrottle is safe for concurrent use.
type IPThrottle struct {
	limit    rate.Limit
	burst    int
	perShard int
	mask     uint64
	seed     maphash.Seed
	n        atomic.Int64 // entries in all shards
	shards   []throttleShard
}

// throttleShard is one locked part of the address space.
type throttleShard struct {
	mu sync.RWMutex // protects m and the list; not the limiters
	m  map[netip.Addr]*throttleEntry
	// lru is the list's sentinel: lru.next is the address seen most
	// recently, lru.prev the one seen least recently.
	lru throttleEntry
	_   [48]byte // keep neighbouring shards' locks off one cache line
}

// throttleEntry is one client's bucket and its place in the shard's list.
type throttleEntry struct {
	key        netip.Addr
	lim        *rate.Limiter
	prev, next *throttleEntry
}

// NewIPThrottle returns an IPThrottle. Rate must be positive and finite,
// Burst at least 1.
func NewIPThrottle(opts IPThrottleOptions) (*IPThrottle, error) {
	if !(opts.Rate > 0) || opts.Rate == rate.Inf || math.IsInf(float64(opts.Rate), 0) {
		return nil, fmt.Errorf("throttle rate %v: must be positive and finite", float64(opts.Rate))
	}
	if opts.Burst < 1 {
		return nil, fmt.Errorf("throttle burst %d: must be at least 1", opts.Burst)
	}
	size := opts.Size
	if size == 0 {
		size = DefaultThrottleSize
	}
	if size < 1 {
		return nil, fmt.Errorf("throttle size %d: must be positive", opts.Size)
	}
	shards := 1
	for shards < maxThrottleShards && size/(shards*2) >= minPerShard {
		shards *= 2
	}
	t := &IPThrottle{
		limit:    opts.Rate,
		burst:    opts.Burst,
		perShard: size / shards,
		mask:     uint64(shards - 1),
		seed:     maphash.MakeSeed(),
		shards:   make([]throttleShard, shards),
	}
	for i := range t.shards {
		s := &t.shards[i]
		s.m = make(map[netip.Addr]*throttleEntry)
		s.lru.next, s.lru.prev = &s.lru, &s.lru
	}
	return t, nil
}

// ThrottleKey is the address a client is counted under: IPv4 addresses
// (and IPv4-mapped IPv6 ones) as they are, IPv6 addresses by their /64
// prefix, without zone. A /64 is the smallest block a subscriber is
// usually given, so counting single IPv6 addresses would let one client
// rotate through 2^64 of them.
func ThrottleKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64) // drops the zone; cannot fail for 64 bits
		return p.Addr()
	}
	return ip
}

// Blocked reports whether ip's bucket is empty at now, and if so how long
// until it holds one event again. It consumes nothing. It does not lock
// anything when no client has an entry, and takes only a read lock and a
// map lookup otherwise; it never allocates.
func (t *IPThrottle) Blocked(ip netip.Addr, now time.Time) (retryAfter time.Duration, blocked bool) {
	if t.n.Load() == 0 {
		return 0, false
	}
	key := ThrottleKey(ip)
	s := t.shard(key)
	s.mu.RLock()
	e := s.m[key]
	var lim *rate.Limiter
	if e != nil {
		lim = e.lim
	}
	s.mu.RUnlock()
	if lim == nil {
		return 0, false
	}
	tokens := lim.TokensAt(now)
	if tokens >= 1 {
		if tokens >= float64(t.burst) {
			t.dropIfFull(s, key, lim, now)
		}
		return 0, false
	}
	return t.wait(tokens), true
}

// Fail records a failure of ip at now: it takes one event from ip's
// bucket, when there is one. It reports whether there was (false: ip was
// already blocked).
func (t *IPThrottle) Fail(ip netip.Addr, now time.Time) bool {
	_, ok := t.take(ip, now)
	return ok
}

// Allow takes one event from ip's bucket at now. When the bucket is empty
// it takes nothing and returns how long until it holds one again.
func (t *IPThrottle) Allow(ip netip.Addr, now time.Time) (retryAfter time.Duration, ok bool) {
	return t.take(ip, now)
}

// Len returns the number of client addresses tracked.
func (t *IPThrottle) Len() int { return int(t.n.Load()) }

// Size returns the number of client addresses tracked at most.
func (t *IPThrottle) Size() int { return t.perShard * len(t.shards) }

func (t *IPThrottle) shard(key netip.Addr) *throttleShard {
	return &t.shards[maphash.Comparable(t.seed, key)&t.mask]
}

// take is Fail and Allow: find or add ip's entry, mark it seen, take one
// event.
func (t *IPThrottle) take(ip netip.Addr, now time.Time) (time.Duration, bool) {
	key := ThrottleKey(ip)
	s := t.shard(key)
	s.mu.Lock()
	e := s.m[key]
	if e != nil {
		s.unlink(e)
	} else {
		e = t.add(s, key)
	}
	s.pushFront(e)
	lim := e.lim
	s.mu.Unlock()
	if lim.AllowN(now, 1) {
		return 0, true
	}
	return t.wait(lim.TokensAt(now)), false
}

// add makes an entry for key with a full bucket, evicting the least
// recently seen entry when the shard is full. s.mu must be held.
func (t *IPThrottle) add(s *throttleShard, key netip.Addr) *throttleEntry {
	var e *throttleEntry
	if len(s.m) >= t.perShard {
		e = s.lru.prev
		s.unlink(e)
		delete(s.m, e.key)
	} else {
		e = new(throttleEntry)
		t.n.Add(1)
	}
	e.key = key
	e.lim = rate.NewLimiter(t.limit, t.burst)
	s.m[key] = e
	return e
}

// dropIfFull removes key's entry when its bucket (lim) has refilled: a
// client that stopped failing leaves no trace, and Blocked is again a
// check of a counter while no client has an entry. Best effort: it gives
// up when the shard is busy.
func (t *IPThrottle) dropIfFull(s *throttleShard, key netip.Addr, lim *rate.Limiter, now time.Time) {
	if !s.mu.TryLock() {
		return
	}
	if e := s.m[key]; e != nil && e.lim == lim && lim.TokensAt(now) >= float64(t.burst) {
		s.unlink(e)
		delete(s.m, key)
		t.n.Add(-1)
	}
	s.mu.Unlock()
}

// wait is the time until a bucket holding tokens (< 1) holds one.
func (t *IPThrottle) wait(tokens float64) time.Duration {
	d := time.Duration(math.Round((1 - tokens) / float64(t.limit) * float64(time.Second)))
	return max(d, time.Nanosecond)
}

func (s *throttleShard) unlink(e *throttleEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (s *throttleShard) pushFront(e *throttleEntry) {
	e.prev, e.next = &s.lru, s.lru.next
	s.lru.next.prev = e
	s.lru.next = e
}

// errRateSyntax describes the accepted forms of a rate.
var errRateSyntax = errors.New(`want <n>/<duration> such as 60/1m or 20/s, or events per second such as 0.5`)

// ParseRate parses a throttle rate: "<n>/<duration>" (n events per
// duration: "60/1m", "20/1s", "5/s", "100/h"; a unit alone means one of
// it) or a number of events per second ("0.5"). The rate must be positive
// and finite.
func ParseRate(s string) (rate.Limit, error) {
	num, per, hasPer := strings.Cut(strings.TrimSpace(s), "/")
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || !(n > 0) || math.IsInf(n, 0) {
		return 0, fmt.Errorf("rate %q: %w", s, errRateSyntax)
	}
	if !hasPer {
		return rate.Limit(n), nil
	}
	if per != "" && (per[0] < '0' || per[0] > '9') && per[0] != '.' {
		per = "1" + per
	}
	d, err := time.ParseDuration(per)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("rate %q: %w", s, errRateSyntax)
	}
	r := n / d.Seconds()
	if !(r > 0) || math.IsInf(r, 0) || rate.Limit(r) == rate.Inf {
		return 0, fmt.Errorf("rate %q: %w", s, errRateSyntax)
	}
	return rate.Limit(r), nil
}
