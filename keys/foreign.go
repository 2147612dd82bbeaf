package keys

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Imported keys ("foreign" keys: a peer gateway's values, of any shape)
// are found by their hash instead of by an id in the key. The Resolver
// keeps a map from keygate's hash of a presented key to the key's id, so
// that after its first use an imported key costs one map lookup more than
// a kg_ key; misses (unknown values) are remembered for NegativeTTL.
//
// A key imported only as a peer's hash is found, on its first use, by
// hashing the presented value the peer's way (every legacy scheme that
// still has keys waiting, in the same store read as keygate's hash); the
// caller then re-hashes it (Store.RehashKey). Once no key of a scheme is
// waiting, that scheme is not computed at all.

// SumInto writes the stored hash of key into dst (32 bytes) without
// allocating, for lookups by hash on the request path.
func (h *Hasher) SumInto(dst *[32]byte, key string) {
	d := h.digests.Get().(*digest)
	d.h.Reset()
	if len(key) <= len(d.scratch) {
		n := copy(d.scratch[:], key)
		d.h.Write(d.scratch[:n])
		clear(d.scratch[:n])
	} else {
		_, _ = io.WriteString(d.h, key)
	}
	copy(dst[:], d.h.Sum(d.buf[:0])) // d.buf, not dst: dst would escape through the interface call
	h.digests.Put(d)
}

// hashCache maps keygate's hash of an imported key to the key's id.
// Positive entries stay until their key changes (its invalidation drops
// them, so a revoked and re-imported value is looked up again) or the cache
// is flushed; negative ones for NegativeTTL, and all of them when any key
// changes (a new import may have added the value).
type hashCache struct {
	mu     sync.RWMutex
	byHash map[[32]byte]string
	byID   map[string][32]byte
	neg    map[[32]byte]int64 // unix nanoseconds until which "unknown" holds
	size   int
}

func newHashCache(size int) *hashCache {
	return &hashCache{byHash: map[[32]byte]string{}, byID: map[string][32]byte{}, neg: map[[32]byte]int64{}, size: size}
}

// get returns the id for sum; known reports whether the answer (an id, or
// "" for a remembered miss) can be used without a store read.
func (c *hashCache) get(sum *[32]byte, now int64) (id string, known bool) {
	c.mu.RLock()
	id, ok := c.byHash[*sum]
	if !ok {
		until, neg := c.neg[*sum]
		ok = neg && now < until
	}
	c.mu.RUnlock()
	return id, ok
}

func (c *hashCache) put(sum *[32]byte, id string) {
	c.mu.Lock()
	if len(c.byHash) >= c.size {
		// Simple and bounded: start over (entries are one store read each).
		c.byHash, c.byID = map[[32]byte]string{}, map[string][32]byte{}
	}
	c.byHash[*sum], c.byID[id] = id, *sum
	delete(c.neg, *sum)
	c.mu.Unlock()
}

func (c *hashCache) putMiss(sum *[32]byte, until int64) {
	c.mu.Lock()
	if len(c.neg) >= c.size {
		c.neg = map[[32]byte]int64{}
	}
	c.neg[*sum] = until
	c.mu.Unlock()
}

// invalidate drops what a change to key id may have made wrong.
func (c *hashCache) invalidate(id string) {
	c.mu.Lock()
	if len(c.neg) > 0 {
		c.neg = map[[32]byte]int64{}
	}
	if sum, ok := c.byID[id]; ok {
		delete(c.byID, id)
		delete(c.byHash, sum)
	}
	c.mu.Unlock()
}

func (c *hashCache) flush() {
	c.mu.Lock()
	c.byHash, c.byID, c.neg = map[[32]byte]string{}, map[string][32]byte{}, map[[32]byte]int64{}
	c.mu.Unlock()
}

// pendingSchemes is the cached answer of Store.PendingHashSchemes.
type pendingSchemes struct {
	schemes []LegacyScheme
	until   int64
}

// ForeignKey is what ResolveForeignKey found.
type ForeignKey struct {
	// Key is the key, from the Resolver's cache.
	Key *Key
	// Legacy is set when the key was found by a legacy hash: the scheme
	// and its hash of the presented value, for Store.RehashKey.
	Legacy    string
	LegacySum []byte
}

// ResolveForeignKey finds the imported key whose value is raw: by sum
// (keygate's hash of raw, from SumInto), or, when allow permits and keys
// wait under legacy schemes, by those schemes' hashes of raw. keyOf loads
// the key by id (Key or KeyOrStale). ErrNotFound when no key has this value.
// The hash comparison that proves the value is constant time.
func (r *Resolver) ResolveForeignKey(ctx context.Context, raw string, sum *[32]byte, now time.Time,
	keyOf func(context.Context, string, time.Time) (*Key, error), allow func(scheme string) bool,
) (ForeignKey, error) {
	nowNs := now.UnixNano()
	id, known := r.hashes.get(sum, nowNs)
	if known && id == "" {
		r.count(true)
		return ForeignKey{}, fmt.Errorf("imported key: %w", ErrNotFound)
	}
	if known {
		k, err := keyOf(ctx, id, now)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				r.hashes.invalidate(id)
			}
			return ForeignKey{}, err
		}
		if k.HashScheme != "" || subtle.ConstantTimeCompare(k.Hash, sum[:]) != 1 {
			r.hashes.invalidate(id)
			return ForeignKey{}, fmt.Errorf("imported key: %w", ErrNotFound)
		}
		if !k.Usable(now) {
			// A revoked value may be imported again as another key: read
			// the store next time.
			r.hashes.invalidate(id)
		}
		return ForeignKey{Key: k}, nil
	}
	r.count(false)

	lookups := make([]KeyHash, 1, 4)
	lookups[0] = KeyHash{Sum: append([]byte(nil), sum[:]...)} // a copy: sum stays on the caller's stack
	if allow != nil {
		pending, err := r.pendingSchemes(ctx, nowNs)
		if err != nil {
			return ForeignKey{}, err
		}
		for _, ls := range pending {
			if allow(ls.Name) {
				lookups = append(lookups, KeyHash{Scheme: ls.String(), Sum: ls.Sum(raw)})
			}
		}
	}
	start := r.seq.Load()
	id, which, err := r.store.FindKeyByHash(ctx, lookups)
	if errors.Is(err, ErrNotFound) {
		if r.seq.Load() == start {
			r.hashes.putMiss(sum, nowNs+int64(r.opts.NegativeTTL))
		}
		return ForeignKey{}, err
	}
	if err != nil {
		return ForeignKey{}, err
	}
	k, err := keyOf(ctx, id, now)
	if err != nil {
		return ForeignKey{}, err
	}
	want := lookups[which]
	if k.HashScheme != want.Scheme || subtle.ConstantTimeCompare(k.Hash, want.Sum) != 1 {
		// The key changed between the two reads (re-hashed by another node):
		// its invalidation is on the way; refuse this once.
		return ForeignKey{}, fmt.Errorf("imported key: %w", ErrNotFound)
	}
	if which == 0 {
		r.hashes.put(sum, id)
		return ForeignKey{Key: k}, nil
	}
	return ForeignKey{Key: k, Legacy: want.Scheme, LegacySum: want.Sum}, nil
}

// Rehashed records that the key with id now has keygate's hash sum (after
// Store.RehashKey), so that its next use is a map lookup.
func (r *Resolver) Rehashed(sum *[32]byte, id string) {
	r.hashes.put(sum, id)
	r.pending.Store(nil) // a scheme may have no key left
}

// pendingSchemes returns the legacy schemes that still have keys waiting,
// read from the store at most once per NegativeTTL.
func (r *Resolver) pendingSchemes(ctx context.Context, now int64) ([]LegacyScheme, error) {
	if p := r.pending.Load(); p != nil && now < p.until {
		return p.schemes, nil
	}
	counts, err := r.store.PendingHashSchemes(ctx)
	if err != nil {
		return nil, err
	}
	var out []LegacyScheme
	for s, n := range counts {
		if n <= 0 {
			continue
		}
		if ls, err := ParseLegacyScheme(s); err == nil {
			out = append(out, ls)
		}
	}
	r.pending.Store(&pendingSchemes{schemes: out, until: now + int64(r.opts.NegativeTTL)})
	return out, nil
}

// foreignState is the Resolver's part for imported keys.
type foreignState struct {
	hashes  *hashCache
	pending atomic.Pointer[pendingSchemes]
}
