package keys

import "context"

// Backend is the storage primitive under keygate's Store: a transactional
// key-value store with ordered indexes. The model's rules (uniqueness,
// versions, state machines, history) are written once, in NewStore, over a
// Backend; keys/filestore (bbolt) and keys/redisstore (Redis) provide one
// each. Tables and indexes are names chosen by the store logic.
type Backend interface {
	// View runs fn in a read-only transaction.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in a read-write transaction. Writes become visible
	// atomically when fn returns nil and are discarded when it returns an
	// error. The backend may run fn again when a concurrent writer touched
	// what fn read (optimistic concurrency), so fn must only act through tx.
	// Invalidations queued with Tx.Notify are published after the commit.
	Update(ctx context.Context, fn func(Tx) error) error
	// Close releases the backend.
	Close() error
}

// Tx is one transaction of a Backend. Reads see the transaction's own writes.
// Index members are ordered by (sortKey, id) as bytes; an id appears at most
// once per index.
type Tx interface {
	// Get returns the value stored under table/id, or ErrNotFound.
	Get(table, id string) ([]byte, error)
	// GetMany returns the values of ids in order; a missing id gives nil.
	GetMany(table string, ids []string) ([][]byte, error)
	// Put stores value under table/id.
	Put(table, id string, value []byte) error
	// Delete removes table/id; deleting a missing id is not an error.
	Delete(table, id string) error

	// IndexAdd adds id with sortKey to index.
	IndexAdd(index, sortKey, id string) error
	// IndexRemove removes id, added with sortKey, from index.
	IndexRemove(index, sortKey, id string) error
	// IndexCount returns the number of members of index.
	IndexCount(index string) (int, error)
	// IndexRange returns up to count ids from position offset (0-based),
	// ascending by (sortKey, id), or descending when desc is set.
	IndexRange(index string, offset, count int, desc bool) ([]string, error)
	// IndexDrop removes a whole index.
	IndexDrop(index string) error

	// Notify queues an invalidation to publish when the transaction commits.
	Notify(inv Invalidation)
}
