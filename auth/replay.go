package auth

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sync"
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
	// could not decide (the gateway answers 503, never 401).
	Remember(ctx context.Context, key [32]byte, ttl time.Duration) (fresh bool, err error)
}

const replayShards = 64

// MemoryReplayGuard is an in-process ReplayGuard for a single node: a
// sharded map bounded to max entries, each expiring after its ttl. When a
// shard is full, its oldest entry is dropped; size max for the peak rate of
// single-use signatures times the TTL.
type MemoryReplayGuard struct {
	shards [replayShards]replayShard
	now    func() time.Time
}

type replayEntry struct {
	key     [32]byte
	expires int64
}

type replayShard struct {
	mu    sync.Mutex // protects the fields below
	seen  map[[32]byte]int64
	queue []replayEntry // ring buffer, in insertion order
	head  int
	n     int
}

// NewMemoryReplayGuard returns an in-process guard holding at most max
// keys (at least one per shard; max <= 0 means 1<<20).
func NewMemoryReplayGuard(max int) *MemoryReplayGuard {
	if max <= 0 {
		max = 1 << 20
	}
	per := (max + replayShards - 1) / replayShards
	g := &MemoryReplayGuard{now: time.Now}
	for i := range g.shards {
		g.shards[i].seen = make(map[[32]byte]int64)
		g.shards[i].queue = make([]replayEntry, per)
	}
	return g
}

// Remember implements ReplayGuard. It never fails.
func (g *MemoryReplayGuard) Remember(_ context.Context, key [32]byte, ttl time.Duration) (bool, error) {
	return g.remember(key, ttl, g.now()), nil
}

func (g *MemoryReplayGuard) remember(key [32]byte, ttl time.Duration, now time.Time) bool {
	s := &g.shards[binary.LittleEndian.Uint32(key[:4])%replayShards]
	t := now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	if exp, ok := s.seen[key]; ok && exp > t {
		return false
	}
	// Drop expired entries from the front, then the oldest if still full.
	for s.n > 0 {
		e := &s.queue[s.head]
		if e.expires > t && s.n < len(s.queue) {
			break
		}
		if s.seen[e.key] == e.expires {
			delete(s.seen, e.key)
		}
		s.head = (s.head + 1) % len(s.queue)
		s.n--
	}
	exp := t + int64(ttl)
	s.seen[key] = exp
	s.queue[(s.head+s.n)%len(s.queue)] = replayEntry{key: key, expires: exp}
	s.n++
	return true
}

// Len returns the number of remembered keys (expired ones not yet dropped included).
func (g *MemoryReplayGuard) Len() int {
	n := 0
	for i := range g.shards {
		s := &g.shards[i]
		s.mu.Lock()
		n += len(s.seen)
		s.mu.Unlock()
	}
	return n
}

// SetNXer is the one Redis command the Redis guard needs; every go-redis
// client (redis.UniversalClient) implements it.
type SetNXer interface {
	SetNX(ctx context.Context, key string, value any, expiration time.Duration) *redis.BoolCmd
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

// Remember implements ReplayGuard. Errors wrap ErrReplayStore and the cause.
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
