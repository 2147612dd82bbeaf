package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/keys"
)

// errReadOnly is returned by writes in a View.
var errReadOnly = errors.New("redisstore: write in a read-only transaction")

// txn is the keys.Tx of View (rtx == nil: plain reads) and Update (reads
// WATCH first; writes are buffered in ops and applied by commit). It is used
// by one goroutine.
type txn struct {
	b   *Backend
	ctx context.Context
	rtx *redis.Tx

	ops     [][]any                  // buffered write commands, in order
	records map[string]pendingRecord // Redis key → value after the tx
	indexes map[string]*pendingIndex // Redis key → pending changes
	invs    []keys.Invalidation

	// replicas is the number of replicas of the master the commit ran on
	// (ROLE inside its MULTI/EXEC), set by a commit that wrote something.
	replicas int
}

// pendingRecord is a record written earlier in the transaction.
type pendingRecord struct {
	value   []byte
	deleted bool
}

// pendingIndex is the pending changes to one index.
type pendingIndex struct {
	dropped bool            // the stored members are gone
	members map[string]bool // member → present after the tx
}

// removals counts pending removals (upper bound of stored members hidden).
func (p *pendingIndex) removals() int {
	n := 0
	for _, present := range p.members {
		if !present {
			n++
		}
	}
	return n
}

// run executes cmds in one round trip bounded by the timeout. Inside Update
// the round trip starts by WATCHing watch, so the EXEC fails if what cmds
// read changes before it. Command errors (redis.Nil included) are left on
// the commands; run returns only the WATCH or connection error.
func (t *txn) run(watch []string, cmds ...redis.Cmder) error {
	ctx, cancel := t.b.callCtx(t.ctx)
	defer cancel()
	if t.rtx == nil {
		if len(cmds) == 1 {
			_ = t.b.client.Process(ctx, cmds[0])
			return nil
		}
		_, err := t.b.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, c := range cmds {
				_ = p.Process(ctx, c)
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		return nil
	}
	args := make([]any, 0, 1+len(watch))
	args = append(args, "watch")
	for _, k := range watch {
		args = append(args, k)
	}
	var w *redis.Cmd
	_, _ = t.rtx.Pipelined(ctx, func(p redis.Pipeliner) error {
		w = p.Do(ctx, args...)
		for _, c := range cmds {
			_ = p.Process(ctx, c)
		}
		return nil
	})
	return w.Err()
}

// Get implements keys.Tx.
func (t *txn) Get(table, id string) ([]byte, error) {
	if err := checkTable(table); err != nil {
		return nil, err
	}
	key := t.b.recordKey(table, id)
	op := "get " + table
	if p, ok := t.records[key]; ok {
		if p.deleted {
			return nil, fmt.Errorf("redisstore: %s: %w", op, keys.ErrNotFound)
		}
		return slices.Clone(p.value), nil
	}
	cmd := redis.NewStringCmd(t.ctx, "get", key)
	if err := t.run([]string{key}, cmd); err != nil {
		return nil, unavailable(op, err)
	}
	v, err := cmd.Bytes()
	if err != nil {
		return nil, readErr(op, err)
	}
	return v, nil
}

// GetMany implements keys.Tx with one MGET for the ids not written earlier
// in the transaction.
func (t *txn) GetMany(table string, ids []string) ([][]byte, error) {
	if err := checkTable(table); err != nil {
		return nil, err
	}
	op := "get many " + table
	out := make([][]byte, len(ids))
	var (
		fetch []string // Redis keys to read
		pos   []int    // their positions in out
	)
	for i, id := range ids {
		key := t.b.recordKey(table, id)
		if p, ok := t.records[key]; ok {
			if !p.deleted {
				out[i] = slices.Clone(p.value)
			}
			continue
		}
		fetch = append(fetch, key)
		pos = append(pos, i)
	}
	if len(fetch) == 0 {
		return out, nil
	}
	args := make([]any, 0, 1+len(fetch))
	args = append(args, "mget")
	for _, k := range fetch {
		args = append(args, k)
	}
	cmd := redis.NewSliceCmd(t.ctx, args...)
	if err := t.run(fetch, cmd); err != nil {
		return nil, unavailable(op, err)
	}
	vals, err := cmd.Result()
	if err != nil {
		return nil, unavailable(op, err)
	}
	if len(vals) != len(fetch) {
		return nil, unavailable(op, fmt.Errorf("mget returned %d values for %d keys", len(vals), len(fetch)))
	}
	for j, v := range vals {
		switch v := v.(type) {
		case nil:
		case string:
			out[pos[j]] = []byte(v)
		default:
			return nil, unavailable(op, fmt.Errorf("mget returned a %T", v))
		}
	}
	return out, nil
}

// Put implements keys.Tx.
func (t *txn) Put(table, id string, value []byte) error {
	if t.rtx == nil {
		return errReadOnly
	}
	if err := checkTable(table); err != nil {
		return err
	}
	key := t.b.recordKey(table, id)
	v := slices.Clone(value)
	if v == nil {
		v = []byte{}
	}
	t.setRecord(key, pendingRecord{value: v})
	t.ops = append(t.ops, []any{"set", key, v})
	return nil
}

// Delete implements keys.Tx.
func (t *txn) Delete(table, id string) error {
	if t.rtx == nil {
		return errReadOnly
	}
	if err := checkTable(table); err != nil {
		return err
	}
	key := t.b.recordKey(table, id)
	t.setRecord(key, pendingRecord{deleted: true})
	t.ops = append(t.ops, []any{"del", key})
	return nil
}

func (t *txn) setRecord(key string, p pendingRecord) {
	if t.records == nil {
		t.records = make(map[string]pendingRecord)
	}
	t.records[key] = p
}

// memberSep ends the escaped sort key of a member.
const memberSep = "\x00\x01"

// member is the sorted-set member of (sortKey, id): the sort key with each
// NUL escaped as NUL 0xFF, then NUL 0x01, then the id. Byte order of members
// is (sortKey, id) order: a sort key that is a prefix of another ends with
// NUL 0x01, below both NUL 0xFF and any other byte.
func member(sortKey, id string) string {
	return strings.ReplaceAll(sortKey, "\x00", "\x00\xff") + memberSep + id
}

// memberID strips the sort key from a member: the escaped sort key holds no
// NUL 0x01, so the first one is the separator.
func memberID(m string) string {
	_, id, _ := strings.Cut(m, memberSep)
	return id
}

func checkIndex(index string) error {
	if index == "" {
		return errors.New("redisstore: empty index name")
	}
	return nil
}

// pending returns the pending changes of the index at key, creating them.
func (t *txn) pending(key string) *pendingIndex {
	if t.indexes == nil {
		t.indexes = make(map[string]*pendingIndex)
	}
	p := t.indexes[key]
	if p == nil {
		p = &pendingIndex{members: make(map[string]bool)}
		t.indexes[key] = p
	}
	return p
}

// IndexAdd implements keys.Tx.
func (t *txn) IndexAdd(index, sortKey, id string) error {
	if t.rtx == nil {
		return errReadOnly
	}
	if err := checkIndex(index); err != nil {
		return err
	}
	key, m := t.b.indexKey(index), member(sortKey, id)
	t.pending(key).members[m] = true
	t.ops = append(t.ops, []any{"zadd", key, 0, m})
	return nil
}

// IndexRemove implements keys.Tx.
func (t *txn) IndexRemove(index, sortKey, id string) error {
	if t.rtx == nil {
		return errReadOnly
	}
	if err := checkIndex(index); err != nil {
		return err
	}
	key, m := t.b.indexKey(index), member(sortKey, id)
	t.pending(key).members[m] = false
	t.ops = append(t.ops, []any{"zrem", key, m})
	return nil
}

// IndexDrop implements keys.Tx.
func (t *txn) IndexDrop(index string) error {
	if t.rtx == nil {
		return errReadOnly
	}
	if err := checkIndex(index); err != nil {
		return err
	}
	key := t.b.indexKey(index)
	p := t.pending(key)
	p.dropped = true
	clear(p.members)
	t.ops = append(t.ops, []any{"del", key})
	return nil
}

// IndexCount implements keys.Tx: ZCARD, corrected by the pending changes.
func (t *txn) IndexCount(index string) (int, error) {
	if err := checkIndex(index); err != nil {
		return 0, err
	}
	key := t.b.indexKey(index)
	op := "index count"
	p := t.indexes[key]
	if p != nil && p.dropped {
		n := 0
		for _, present := range p.members {
			if present {
				n++
			}
		}
		return n, nil
	}
	card := redis.NewIntCmd(t.ctx, "zcard", key)
	cmds := []redis.Cmder{card}
	var (
		names  []string
		scores []*redis.FloatCmd
	)
	if p != nil {
		for m := range p.members {
			names = append(names, m)
			s := redis.NewFloatCmd(t.ctx, "zscore", key, m)
			scores = append(scores, s)
			cmds = append(cmds, s)
		}
	}
	if err := t.run([]string{key}, cmds...); err != nil {
		return 0, unavailable(op, err)
	}
	n, err := card.Result()
	if err != nil {
		return 0, unavailable(op, err)
	}
	for i, s := range scores {
		stored := true
		if err := s.Err(); errors.Is(err, redis.Nil) {
			stored = false
		} else if err != nil {
			return 0, unavailable(op, err)
		}
		switch present := p.members[names[i]]; {
		case present && !stored:
			n++
		case !present && stored:
			n--
		}
	}
	return int(n), nil
}

// IndexRange implements keys.Tx with ZRANGE (ZREVRANGE when desc) by rank. A
// negative count means every id from offset on. With pending changes on the
// index, it reads the stored members up to offset+count plus the number of
// pending removals and merges the changes in.
func (t *txn) IndexRange(index string, offset, count int, desc bool) ([]string, error) {
	if err := checkIndex(index); err != nil {
		return nil, err
	}
	if offset < 0 {
		offset = 0
	}
	if count == 0 {
		return []string{}, nil
	}
	key := t.b.indexKey(index)
	op := "index range"
	p := t.indexes[key]

	var stored []string
	if p == nil || !p.dropped {
		start, stop := int64(offset), int64(-1)
		if p != nil {
			start = 0 // the pending changes may shift ranks
		}
		if count > 0 {
			stop = int64(offset) + int64(count) - 1
			if p != nil {
				stop += int64(p.removals())
			}
		}
		name := "zrange"
		if desc {
			name = "zrevrange"
		}
		cmd := redis.NewStringSliceCmd(t.ctx, name, key, start, stop)
		if err := t.run([]string{key}, cmd); err != nil {
			return nil, unavailable(op, err)
		}
		var err error
		if stored, err = cmd.Result(); err != nil {
			return nil, unavailable(op, err)
		}
	}
	if p == nil {
		ids := make([]string, len(stored))
		for i, m := range stored {
			ids[i] = memberID(m)
		}
		return ids, nil
	}

	// Merge: stored members minus pending removals, plus pending additions.
	seen := make(map[string]bool, len(stored)+len(p.members))
	merged := make([]string, 0, len(stored)+len(p.members))
	for _, m := range stored {
		if present, ok := p.members[m]; ok && !present {
			continue
		}
		seen[m] = true
		merged = append(merged, m)
	}
	for m, present := range p.members {
		if present && !seen[m] {
			merged = append(merged, m)
		}
	}
	slices.Sort(merged)
	if desc {
		slices.Reverse(merged)
	}
	if offset >= len(merged) {
		return []string{}, nil
	}
	merged = merged[offset:]
	if count > 0 && count < len(merged) {
		merged = merged[:count]
	}
	ids := make([]string, len(merged))
	for i, m := range merged {
		ids[i] = memberID(m)
	}
	return ids, nil
}

// Notify implements keys.Tx; a View drops the invalidation.
func (t *txn) Notify(inv keys.Invalidation) {
	if t.rtx == nil || slices.Contains(t.invs, inv) {
		return
	}
	t.invs = append(t.invs, inv)
}

// commit applies the buffered writes and publishes the invalidations with
// MULTI/EXEC. It returns redis.TxFailedErr when a watched key changed. A
// transaction without writes still runs EXEC (around a PING), so what fn
// read was one consistent state.
func (t *txn) commit() error {
	msgs := make([][]byte, 0, len(t.invs))
	for _, inv := range t.invs {
		b, err := json.Marshal(inv)
		if err != nil {
			return fmt.Errorf("redisstore: encoding invalidation: %w", err)
		}
		msgs = append(msgs, b)
	}
	ctx, cancel := t.b.callCtx(t.ctx)
	defer cancel()
	var role *redis.Cmd
	_, err := t.rtx.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, args := range t.ops {
			p.Do(ctx, args...)
		}
		for _, m := range msgs {
			p.Publish(ctx, t.b.channel, m)
		}
		if len(t.ops) == 0 && len(msgs) == 0 {
			p.Ping(ctx)
		} else if t.b.replicaWait > 0 {
			// Whether to WAIT for a replica, asked of the node that
			// committed, in the same round trip.
			role = p.Do(ctx, "role")
		}
		return nil
	})
	if err == nil && role != nil {
		t.replicas = countReplicas(role)
	}
	return err
}

// countReplicas reads the number of replicas from a ROLE answer; when it
// cannot be read, it answers 1, so that the write waits rather than risks
// being lost.
func countReplicas(role *redis.Cmd) int {
	v, err := role.Slice()
	if err != nil || len(v) < 1 {
		return 1
	}
	if v[0] != "master" {
		return 0 // not a master: no WAIT to do (a write would have failed)
	}
	if len(v) < 3 {
		return 1
	}
	list, ok := v[2].([]any)
	if !ok {
		return 1
	}
	return len(list)
}

// release drops the transaction's WATCHes when it ends without EXEC, with a
// fresh deadline so an expired transaction context cannot leave them on a
// pooled connection.
func (t *txn) release() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.ctx), t.b.timeout)
	defer cancel()
	_ = t.rtx.Unwatch(ctx).Err()
}
