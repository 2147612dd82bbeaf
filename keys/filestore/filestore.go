// Package filestore is keygate's embedded store: a keys.Backend on one bbolt
// file, for a single node. keys.NewStore puts the model's rules on top.
//
// Layout: one bucket per table ("t/<table>", key id → value); all indexes
// share three buckets: "ix" (index\x00sortKey\x00id → id), "ixr"
// (index\x00id → sortKey, so an id is at most once per index) and "ixn"
// (index → member count).
package filestore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/keygate/keygate/keys"
)

// ErrLocked: the file is held by another process (or another Backend of this
// one), typically a running keygate server.
var ErrLocked = errors.New("store file is locked by another process")

// Options configure Open.
type Options struct {
	// Timeout bounds the wait for the file lock. Default: 1s.
	Timeout time.Duration
	// FileMode of a new file. Default: 0600.
	FileMode os.FileMode
}

// Backend is a keys.Backend on a bbolt file. It implements keys.Notifier:
// invalidations go to in-process subscribers after each commit.
type Backend struct {
	db  *bolt.DB
	hub hub
}

var (
	_ keys.Backend  = (*Backend)(nil)
	_ keys.Notifier = (*Backend)(nil)
)

// Open opens or creates the bbolt file at path, creating its directory
// (0700). When another process holds the file it fails after opts.Timeout
// with an error matching ErrLocked.
func Open(path string, opts Options) (*Backend, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	if opts.FileMode == 0 {
		opts.FileMode = 0o600
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating store directory: %w", err)
	}
	db, err := bolt.Open(path, opts.FileMode, &bolt.Options{Timeout: opts.Timeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("opening %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	return &Backend{db: db}, nil
}

// NewStore opens the file at path and returns the keys.Store on it.
func NewStore(path string, opts Options, sopts keys.StoreOptions) (keys.Store, error) {
	b, err := Open(path, opts)
	if err != nil {
		return nil, err
	}
	return keys.NewStore(b, sopts), nil
}

// Path returns the file's path.
func (b *Backend) Path() string { return b.db.Path() }

// View runs fn in a read-only transaction.
func (b *Backend) View(ctx context.Context, fn func(keys.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return mapErr(b.db.View(func(btx *bolt.Tx) error { return fn(&tx{btx: btx}) }))
}

// Update runs fn in a read-write transaction and publishes its
// invalidations after the commit.
func (b *Backend) Update(ctx context.Context, fn func(keys.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t := &tx{}
	err := b.db.Update(func(btx *bolt.Tx) error {
		t.btx, t.invs = btx, nil
		return fn(t)
	})
	if err != nil {
		return mapErr(err)
	}
	b.hub.publish(t.invs)
	return nil
}

// Close ends all subscriptions and closes the file.
func (b *Backend) Close() error {
	b.hub.close()
	return b.db.Close()
}

// Subscribe calls l.Change for every invalidation committed after it
// returns, until ctx ends. A subscriber that falls behind loses
// notifications and gets l.Gap(true) called; the writer never waits for it.
// It never calls l.Confirm: caches over the file store keep their TTLs.
func (b *Backend) Subscribe(ctx context.Context, l keys.Listener) error {
	return b.hub.subscribe(ctx, l.Change, l.Gap)
}

// mapErr turns bbolt's closed-database error into keys.ErrUnavailable.
func mapErr(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("bbolt: %w", keys.ErrUnavailable)
	}
	return err
}

// Bucket names.
const (
	tablePrefix = "t/"
	bIndex      = "ix"
	bReverse    = "ixr"
	bCount      = "ixn"
)

// tx is one bbolt transaction.
type tx struct {
	btx  *bolt.Tx
	invs []keys.Invalidation
}

// bucket returns a bucket, creating it in a writable transaction; nil when
// it does not exist in a read-only one.
func (t *tx) bucket(name string) (*bolt.Bucket, error) {
	if b := t.btx.Bucket([]byte(name)); b != nil || !t.btx.Writable() {
		return b, nil
	}
	b, err := t.btx.CreateBucket([]byte(name))
	if err != nil {
		return nil, fmt.Errorf("creating bucket %s: %w", name, err)
	}
	return b, nil
}

// Get returns the value of table/id or keys.ErrNotFound.
func (t *tx) Get(table, id string) ([]byte, error) {
	b, err := t.bucket(tablePrefix + table)
	if err != nil {
		return nil, err
	}
	var v []byte
	if b != nil {
		v = b.Get([]byte(id))
	}
	if v == nil {
		return nil, fmt.Errorf("%s %s: %w", table, id, keys.ErrNotFound)
	}
	return slices.Clone(v), nil
}

// GetMany returns the values of ids, nil for missing ones.
func (t *tx) GetMany(table string, ids []string) ([][]byte, error) {
	b, err := t.bucket(tablePrefix + table)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(ids))
	if b == nil {
		return out, nil
	}
	for i, id := range ids {
		if v := b.Get([]byte(id)); v != nil {
			out[i] = slices.Clone(v)
		}
	}
	return out, nil
}

// Put stores value under table/id.
func (t *tx) Put(table, id string, value []byte) error {
	b, err := t.bucket(tablePrefix + table)
	if err != nil {
		return err
	}
	return b.Put([]byte(id), slices.Clone(value))
}

// Delete removes table/id.
func (t *tx) Delete(table, id string) error {
	b, err := t.bucket(tablePrefix + table)
	if err != nil || b == nil {
		return err
	}
	return b.Delete([]byte(id))
}

// indexBuckets returns the three index buckets (nil in a read-only
// transaction before the first index was written).
func (t *tx) indexBuckets() (ix, rev, cnt *bolt.Bucket, err error) {
	if ix, err = t.bucket(bIndex); err != nil {
		return
	}
	if rev, err = t.bucket(bReverse); err != nil {
		return
	}
	cnt, err = t.bucket(bCount)
	return
}

func memberKey(index, sortKey, id string) []byte {
	return []byte(index + "\x00" + sortKey + "\x00" + id)
}

func reverseKey(index, id string) []byte { return []byte(index + "\x00" + id) }

// addCount changes an index's member count by d.
func addCount(cnt *bolt.Bucket, index string, d int64) error {
	n := int64(0)
	if v := cnt.Get([]byte(index)); v != nil {
		n = int64(binary.BigEndian.Uint64(v))
	}
	n += d
	if n <= 0 {
		return cnt.Delete([]byte(index))
	}
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], uint64(n))
	return cnt.Put([]byte(index), buf[:])
}

// IndexAdd adds id with sortKey to index, moving it when it is there with
// another sort key.
func (t *tx) IndexAdd(index, sortKey, id string) error {
	ix, rev, cnt, err := t.indexBuckets()
	if err != nil {
		return err
	}
	rk := reverseKey(index, id)
	if old := rev.Get(rk); old != nil {
		if string(old) == sortKey {
			return nil
		}
		if err := ix.Delete(memberKey(index, string(old), id)); err != nil {
			return err
		}
	} else if err := addCount(cnt, index, 1); err != nil {
		return err
	}
	if err := rev.Put(rk, []byte(sortKey)); err != nil {
		return err
	}
	return ix.Put(memberKey(index, sortKey, id), []byte(id))
}

// IndexRemove removes id from index (whatever sort key it has).
func (t *tx) IndexRemove(index, _ string, id string) error {
	ix, rev, cnt, err := t.indexBuckets()
	if err != nil {
		return err
	}
	rk := reverseKey(index, id)
	old := rev.Get(rk)
	if old == nil {
		return nil
	}
	if err := ix.Delete(memberKey(index, string(old), id)); err != nil {
		return err
	}
	if err := rev.Delete(rk); err != nil {
		return err
	}
	return addCount(cnt, index, -1)
}

// IndexCount returns the number of members of index.
func (t *tx) IndexCount(index string) (int, error) {
	cnt, err := t.bucket(bCount)
	if err != nil || cnt == nil {
		return 0, err
	}
	if v := cnt.Get([]byte(index)); v != nil {
		return int(binary.BigEndian.Uint64(v)), nil
	}
	return 0, nil
}

// IndexRange returns up to count ids from position offset, ascending or
// descending. It walks the cursor from whichever end of the index is
// nearer to the requested window.
func (t *tx) IndexRange(index string, offset, count int, desc bool) ([]string, error) {
	if offset < 0 || count <= 0 {
		return nil, nil
	}
	n, err := t.IndexCount(index)
	if err != nil || offset >= n {
		return nil, err
	}
	ix, err := t.bucket(bIndex)
	if err != nil || ix == nil {
		return nil, err
	}
	count = min(count, n-offset)
	// Position in walking direction: from the requested end, or the window
	// mirrored from the other end and then reversed.
	fromEnd := desc
	skip := offset
	if far := n - offset - count; far < offset {
		fromEnd, skip = !desc, far
	}
	out := make([]string, 0, count)
	prefix := []byte(index + "\x00")
	c := ix.Cursor()
	var k, v []byte
	if fromEnd {
		k, _ = c.Seek([]byte(index + "\x01"))
		if k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
	} else {
		k, v = c.Seek(prefix)
	}
	for ; k != nil && bytes.HasPrefix(k, prefix) && len(out) < count; k, v = step(c, fromEnd) {
		if skip > 0 {
			skip--
			continue
		}
		out = append(out, string(v))
	}
	if fromEnd != desc {
		slices.Reverse(out)
	}
	return out, nil
}

func step(c *bolt.Cursor, back bool) ([]byte, []byte) {
	if back {
		return c.Prev()
	}
	return c.Next()
}

// IndexDrop removes a whole index.
func (t *tx) IndexDrop(index string) error {
	ix, rev, cnt, err := t.indexBuckets()
	if err != nil {
		return err
	}
	prefix := []byte(index + "\x00")
	for _, b := range []*bolt.Bucket{ix, rev} {
		c := b.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
			if err := c.Delete(); err != nil {
				return err
			}
		}
	}
	return cnt.Delete([]byte(index))
}

// Notify queues an invalidation for after the commit.
func (t *tx) Notify(inv keys.Invalidation) { t.invs = append(t.invs, inv) }

// hub fans invalidations out to subscribers.
type hub struct {
	mu     sync.Mutex // protects subs and closed
	subs   map[*subscriber]struct{}
	closed bool
}

// subscriberBuffer is how many invalidations a subscriber may lag behind
// before it loses some.
const subscriberBuffer = 1024

type subscriber struct {
	ch   chan keys.Invalidation
	lost chan struct{} // 1-buffered: a loss to report
	done chan struct{}
}

func (h *hub) subscribe(ctx context.Context, fn func(keys.Invalidation), gap func(live bool)) error {
	if fn == nil {
		return errors.New("subscribe: nil callback")
	}
	s := &subscriber{
		ch:   make(chan keys.Invalidation, subscriberBuffer),
		lost: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return fmt.Errorf("subscribe: %w", keys.ErrUnavailable)
	}
	if h.subs == nil {
		h.subs = map[*subscriber]struct{}{}
	}
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	go func() {
		defer func() {
			h.mu.Lock()
			delete(h.subs, s)
			h.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.done:
				return
			case inv := <-s.ch:
				fn(inv)
			case <-s.lost:
				if gap != nil {
					gap(true) // still subscribed, but some notifications were dropped
				}
			}
		}
	}()
	return nil
}

// publish hands invs to every subscriber without blocking; a full
// subscriber is marked as having lost notifications.
func (h *hub) publish(invs []keys.Invalidation) {
	if len(invs) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		for _, inv := range invs {
			select {
			case s.ch <- inv:
			default:
				select {
				case s.lost <- struct{}{}:
				default:
				}
			}
		}
	}
}

// close ends every subscription.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	for s := range h.subs {
		close(s.done)
	}
}
