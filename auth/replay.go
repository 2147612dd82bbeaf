package auth

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// ReplayMode is a route's replay_protection setting.
type ReplayMode string

// Replay modes (SPEC section 3).
const (
	// ReplayOn makes nonce-bearing signatures and unsafe methods single-use;
	// nonce-less GET/HEAD/OPTIONS signatures are only checked for freshness.
	ReplayOn ReplayMode = "on"
	// ReplayAll makes every signature single-use.
	ReplayAll ReplayMode = "all"
	// ReplayOff never checks replays (freshness is still checked).
	ReplayOff ReplayMode = "off"
)

// ParseReplayMode parses on|all|off; empty means ReplayOn.
func ParseReplayMode(s string) (ReplayMode, error) {
	switch ReplayMode(s) {
	case "", ReplayOn:
		return ReplayOn, nil
	case ReplayAll, ReplayOff:
		return ReplayMode(s), nil
	}
	return "", fmt.Errorf("unknown replay mode %q (want on, all or off)", s)
}

// NeedsReplayCheck reports whether a verified signature of a request with
// method must be remembered as single-use under mode (empty mode is "on").
func NeedsReplayCheck(mode ReplayMode, method string, hasNonce bool) bool {
	switch mode {
	case ReplayOff:
		return false
	case ReplayAll:
		return true
	}
	if hasNonce {
		return true
	}
	switch method {
	case "GET", "HEAD", "OPTIONS":
		return false
	}
	// POST, PUT, PATCH, DELETE and anything unknown are treated as unsafe.
	return true
}

// ReplayGuard remembers signature digests to refuse their reuse.
type ReplayGuard interface {
	// Remember records key for ttl. fresh is true the first time a key is
	// seen within its ttl and false for a replay. An error means the guard
	// could not decide, or could not record a new key (it wraps
	// ErrReplayStore or ErrReplayFull): the request is refused (the
	// gateway answers 503, never 401), never accepted unguarded.
	Remember(ctx context.Context, key [32]byte, ttl time.Duration) (fresh bool, err error)
	// Forget drops key, which Remember recorded for a request that was
	// refused afterwards (its request limit was reached): the signature
	// was not used, and the guard holds only those that were. An error
	// leaves the key remembered until its ttl, which refuses more, never
	// less.
	Forget(ctx context.Context, key [32]byte) error
}

const replayShards = 64

// DefaultReplayEntries is the capacity of NewMemoryReplayGuard(0).
const DefaultReplayEntries = 1 << 20

// ReplayEntryBytes bounds what one remembered key costs a
// MemoryReplayGuard (its map slot and heap entry, with the slack of their
// growth; 100 to 130 bytes is typical): the guard's memory is at most its
// capacity times this, 160 MiB at DefaultReplayEntries, allocated as keys
// arrive (Go maps do not shrink, so a node keeps the memory of its peak).
const ReplayEntryBytes = 160

// MemoryReplayGuard is an in-process ReplayGuard for a single node: a
// sharded map of at most max keys, each forgotten when its ttl ends (and
// not before: an unexpired key is never evicted, whatever else arrives).
// When max unexpired keys are held, Remember refuses a new key with
// ErrReplayFull rather than let its request through unguarded; a replay of
// a held key is still reported as one. Memory is bounded by max ×
// ReplayEntryBytes. Size max for the peak rate of single-use signatures
// the gateway lets through times their ttl (2 × max_skew).
type MemoryReplayGuard struct {
	shards [replayShards]replayShard
	max    int64
	n      atomic.Int64 // keys held in all shards
	full   atomic.Int64 // Remember calls refused with ErrReplayFull
	now    func() time.Time
}

type replayEntry struct {
	key     [32]byte
	expires int64 // unix nanoseconds
}

// replayShard is a min-heap of entries by expiry with an index from key to
// heap position, so that expired keys leave from the top and Forget removes
// any key, both in O(log n).
type replayShard struct {
	mu   sync.Mutex // protects the fields below
	pos  map[[32]byte]int32
	heap []replayEntry
}

// NewMemoryReplayGuard returns an in-process guard holding at most max
// unexpired keys (max <= 0 means DefaultReplayEntries).
func NewMemoryReplayGuard(max int) *MemoryReplayGuard {
	if max <= 0 {
		max = DefaultReplayEntries
	}
	g := &MemoryReplayGuard{max: int64(max), now: time.Now}
	for i := range g.shards {
		g.shards[i].pos = make(map[[32]byte]int32)
	}
	return g
}

// Remember implements ReplayGuard. Its only error is ErrReplayFull.
func (g *MemoryReplayGuard) Remember(_ context.Context, key [32]byte, ttl time.Duration) (bool, error) {
	return g.remember(key, ttl, g.now())
}

// Forget implements ReplayGuard. It never fails.
func (g *MemoryReplayGuard) Forget(_ context.Context, key [32]byte) error {
	s := g.shard(key)
	s.mu.Lock()
	if i, ok := s.pos[key]; ok {
		s.remove(int(i))
		g.n.Add(-1)
	}
	s.mu.Unlock()
	return nil
}

func (g *MemoryReplayGuard) shard(key [32]byte) *replayShard {
	return &g.shards[binary.LittleEndian.Uint32(key[:4])%replayShards]
}

func (g *MemoryReplayGuard) remember(key [32]byte, ttl time.Duration, now time.Time) (bool, error) {
	s := g.shard(key)
	t := now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	g.n.Add(-s.expire(t))
	if _, ok := s.pos[key]; ok {
		return false, nil // held, hence unexpired: a replay
	}
	if !g.reserve() {
		// Full: other shards may hold expired keys. Sweep them (without
		// this shard's lock, which a sweep takes in turn) and try again.
		s.mu.Unlock()
		g.sweep(t)
		s.mu.Lock()
		if _, ok := s.pos[key]; ok {
			return false, nil
		}
		if !g.reserve() {
			g.full.Add(1)
			return false, ErrReplayFull
		}
	}
	s.push(replayEntry{key: key, expires: t + int64(ttl)})
	return true, nil
}

// reserve counts one more key, or reports false when max are held.
func (g *MemoryReplayGuard) reserve() bool {
	if g.n.Add(1) > g.max {
		g.n.Add(-1)
		return false
	}
	return true
}

// sweep drops the expired keys of every shard.
func (g *MemoryReplayGuard) sweep(t int64) {
	for i := range g.shards {
		s := &g.shards[i]
		s.mu.Lock()
		g.n.Add(-s.expire(t))
		s.mu.Unlock()
	}
}

// Len returns the number of keys held (expired ones not yet dropped included).
func (g *MemoryReplayGuard) Len() int { return int(g.n.Load()) }

// Full returns how many new keys were refused because the guard was full.
func (g *MemoryReplayGuard) Full() int64 { return g.full.Load() }

// expire drops the entries that expired at t and returns how many. The
// caller holds s.mu.
func (s *replayShard) expire(t int64) int64 {
	var n int64
	for len(s.heap) > 0 && s.heap[0].expires <= t {
		s.remove(0)
		n++
	}
	return n
}

// push adds e. The caller holds s.mu.
func (s *replayShard) push(e replayEntry) {
	s.heap = append(s.heap, e)
	i := len(s.heap) - 1
	s.pos[e.key] = int32(i)
	s.up(i)
}

// remove drops the entry at heap position i. The caller holds s.mu.
func (s *replayShard) remove(i int) {
	last := len(s.heap) - 1
	delete(s.pos, s.heap[i].key)
	if i != last {
		s.heap[i] = s.heap[last]
		s.pos[s.heap[i].key] = int32(i)
	}
	s.heap[last] = replayEntry{}
	s.heap = s.heap[:last]
	if i != last {
		s.down(i)
		s.up(i)
	}
	if cap(s.heap) > 64 && len(s.heap) < cap(s.heap)/4 {
		// Give back the memory of a flood once it has expired.
		s.heap = append(make([]replayEntry, 0, cap(s.heap)/2), s.heap...)
	}
}

func (s *replayShard) swap(i, j int) {
	s.heap[i], s.heap[j] = s.heap[j], s.heap[i]
	s.pos[s.heap[i].key] = int32(i)
	s.pos[s.heap[j].key] = int32(j)
}

func (s *replayShard) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if s.heap[p].expires <= s.heap[i].expires {
			return
		}
		s.swap(i, p)
		i = p
	}
}

func (s *replayShard) down(i int) {
	n := len(s.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && s.heap[r].expires < s.heap[l].expires {
			m = r
		}
		if s.heap[i].expires <= s.heap[m].expires {
			return
		}
		s.swap(i, m)
		i = m
	}
}

// SetNXer is the Redis commands the Redis guard needs; every go-redis
// client (redis.UniversalClient) implements them.
type SetNXer interface {
	SetNX(ctx context.Context, key string, value any, expiration time.Duration) *redis.BoolCmd
	Del(ctx context.Context, keys ...string) *redis.IntCmd
}

// RedisReplayGuard is a ReplayGuard shared by all gateway nodes: one
// SET key 1 NX PX ttl per check.
type RedisReplayGuard struct {
	client  SetNXer
	prefix  string
	timeout time.Duration
}

// NewRedisReplayGuard returns a guard storing keys as
// <prefix>replay:{<hex of the first 2 bytes>}<hex of the rest>; the hash tag
// spreads keys over cluster slots. Each call runs under a context deadline
// of timeout (0 means 50ms); go-redis honours it for an in-flight command
// only when the client has ContextTimeoutEnabled set (it always gates pool
// acquisition), so configure the client with it and with Read/WriteTimeout.
func NewRedisReplayGuard(client SetNXer, prefix string, timeout time.Duration) *RedisReplayGuard {
	if timeout <= 0 {
		timeout = 50 * time.Millisecond
	}
	return &RedisReplayGuard{client: client, prefix: prefix, timeout: timeout}
}

// Remember implements ReplayGuard. Errors wrap ErrReplayStore and the
// cause; a key is fresh only when Redis said so (SET NX succeeded).
func (g *RedisReplayGuard) Remember(ctx context.Context, key [32]byte, ttl time.Duration) (bool, error) {
	if ttl < time.Millisecond {
		ttl = time.Millisecond
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	fresh, err := g.client.SetNX(ctx, g.key(key), "1", ttl).Result()
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrReplayStore, err)
	}
	return fresh, nil
}

// Forget implements ReplayGuard: DEL under the guard's timeout. Errors
// wrap ErrReplayStore and the cause.
func (g *RedisReplayGuard) Forget(ctx context.Context, key [32]byte) error {
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	if err := g.client.Del(ctx, g.key(key)).Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrReplayStore, err)
	}
	return nil
}

func (g *RedisReplayGuard) key(k [32]byte) string {
	b := make([]byte, 0, len(g.prefix)+len("replay:{}")+64)
	b = append(b, g.prefix...)
	b = append(b, "replay:{"...)
	b = hex.AppendEncode(b, k[:2])
	b = append(b, '}')
	b = hex.AppendEncode(b, k[2:])
	return string(b)
}

var (
	_ ReplayGuard = (*MemoryReplayGuard)(nil)
	_ ReplayGuard = (*RedisReplayGuard)(nil)
)
