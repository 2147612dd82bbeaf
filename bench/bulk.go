package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/keys/redisstore"
)

// bulkBackend is a keys.Backend for seeding a fresh store fast: the store's
// own code (keys.NewStore) decides what to write, exactly as for an admin
// call, but the writes are not committed one transaction at a time: they
// are queued as the same Redis commands the redisstore Backend would send
// (SET of a record, ZADD/ZREM of an index member) and sent in large
// pipelines. Reads see the worker's own pending writes first, then Redis.
// No invalidations are published: no gateway node runs while it seeds.
//
// It is for the benchmark only: there is no isolation between workers and
// no WATCH, which is safe because every worker writes records of its own
// (new ids) and index members of its own.
type bulkBackend struct {
	real  *redisstore.Backend
	pipe  redis.Pipeliner
	base  string // prefix + "{kg}:", as redisstore lays keys out
	ops   int
	batch int
	// overlay holds this worker's writes not yet read back from Redis.
	overlay map[string][]byte
	sent    *atomic.Int64
}

func newBulkBackend(client redis.UniversalClient, prefix string, batch int, sent *atomic.Int64) *bulkBackend {
	return &bulkBackend{
		real:    redisstore.New(client, redisstore.Options{Prefix: prefix, Timeout: 5 * time.Second}),
		pipe:    client.Pipeline(),
		base:    prefix + "{kg}:",
		batch:   batch,
		overlay: make(map[string][]byte),
		sent:    sent,
	}
}

func (b *bulkBackend) View(ctx context.Context, fn func(keys.Tx) error) error {
	return b.real.View(ctx, func(tx keys.Tx) error { return fn(&bulkTx{b: b, ctx: ctx, read: tx}) })
}

func (b *bulkBackend) Update(ctx context.Context, fn func(keys.Tx) error) error {
	return b.View(ctx, fn)
}

func (b *bulkBackend) Close() error { return nil }

// flush sends the queued commands.
func (b *bulkBackend) flush(ctx context.Context) error {
	if b.ops == 0 {
		return nil
	}
	cmds, err := b.pipe.Exec(ctx)
	if err != nil {
		return fmt.Errorf("bulk pipeline of %d commands: %w", len(cmds), err)
	}
	b.sent.Add(int64(b.ops))
	b.ops = 0
	clear(b.overlay)
	return nil
}

func (b *bulkBackend) queue(ctx context.Context, args ...any) error {
	b.pipe.Do(ctx, args...)
	b.ops++
	if b.ops >= b.batch {
		return b.flush(ctx)
	}
	return nil
}

// bulkTx reads through the overlay and writes into the pipeline.
type bulkTx struct {
	b    *bulkBackend
	ctx  context.Context
	read keys.Tx
}

func (t *bulkTx) recordKey(table, id string) string { return t.b.base + table + ":" + id }
func (t *bulkTx) indexKey(index string) string      { return t.b.base + "@ix:" + index }

// member is redisstore's sorted-set member of (sortKey, id).
func member(sortKey, id string) string {
	return strings.ReplaceAll(sortKey, "\x00", "\x00\xff") + "\x00\x01" + id
}

func (t *bulkTx) Get(table, id string) ([]byte, error) {
	if v, ok := t.b.overlay[t.recordKey(table, id)]; ok {
		if v == nil {
			return nil, keys.ErrNotFound
		}
		return slices.Clone(v), nil
	}
	return t.read.Get(table, id)
}

func (t *bulkTx) GetMany(table string, ids []string) ([][]byte, error) {
	out, err := t.read.GetMany(table, ids)
	if err != nil {
		return nil, err
	}
	for i, id := range ids {
		if v, ok := t.b.overlay[t.recordKey(table, id)]; ok {
			out[i] = slices.Clone(v)
		}
	}
	return out, nil
}

func (t *bulkTx) Put(table, id string, value []byte) error {
	k := t.recordKey(table, id)
	v := slices.Clone(value)
	if v == nil {
		v = []byte{}
	}
	t.b.overlay[k] = v
	return t.b.queue(t.ctx, "set", k, v)
}

func (t *bulkTx) Delete(table, id string) error {
	k := t.recordKey(table, id)
	t.b.overlay[k] = nil
	return t.b.queue(t.ctx, "del", k)
}

func (t *bulkTx) IndexAdd(index, sortKey, id string) error {
	return t.b.queue(t.ctx, "zadd", t.indexKey(index), 0, member(sortKey, id))
}

func (t *bulkTx) IndexRemove(index, sortKey, id string) error {
	return t.b.queue(t.ctx, "zrem", t.indexKey(index), member(sortKey, id))
}

func (t *bulkTx) IndexCount(index string) (int, error) { return t.read.IndexCount(index) }

func (t *bulkTx) IndexRange(index string, offset, count int, desc bool) ([]string, error) {
	return t.read.IndexRange(index, offset, count, desc)
}

func (t *bulkTx) IndexDrop(index string) error { return t.b.queue(t.ctx, "del", t.indexKey(index)) }

func (t *bulkTx) Notify(keys.Invalidation) {}

// seededUser is a seeded user and the plaintext of its access key.
type seededUser struct {
	id, key string
}

// bulkSeed creates n SERVICE users in tenant, each with an ACTIVE
// permission there and one access key, through the store's own code on
// bulkBackends (workers of them), and returns every sample-th user (and the
// first 16).
func bulkSeed(ctx context.Context, client redis.UniversalClient, prefix, tenant string, n, workers, sample int, progress func(done int)) ([]seededUser, error) {
	hasher := keys.NewHasher(nil)
	expires := time.Now().Add(24 * time.Hour)
	var next, done, sent atomic.Int64
	var mu sync.Mutex
	var samples []seededUser
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			bb := newBulkBackend(client, prefix, 2000, &sent)
			store := keys.NewStore(bb, keys.StoreOptions{})
			fail := func(err error) { errs <- err }
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					break
				}
				u, err := store.CreateUser(ctx, keys.User{Name: fmt.Sprintf("scale-%07d", i), Type: keys.UserService,
					Role: keys.RoleMember, PrimaryTenant: tenant, RequestLimit: 1_000_000_000}, "bench")
				if err == nil {
					_, _, err = store.PutPermission(ctx, keys.Permission{UserID: u.ID, TenantID: tenant,
						Role: keys.RoleMember, Status: keys.PermissionActive}, "bench")
				}
				var plain string
				if err == nil {
					var k keys.Key
					plain, k = keys.NewAccessKey(hasher, u.ID, tenant, "bench", expires)
					_, err = store.CreateKey(ctx, k, "bench")
				}
				if err != nil {
					fail(fmt.Errorf("seeding user %d: %w", i, err))
					return
				}
				if sample > 0 && (i%sample == 0 || i < 16) {
					mu.Lock()
					samples = append(samples, seededUser{id: u.ID, key: plain})
					mu.Unlock()
				}
				if d := done.Add(1); progress != nil && d%100_000 == 0 {
					progress(int(d))
				}
			}
			if err := bb.flush(ctx); err != nil {
				fail(err)
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	return samples, ctx.Err()
}
