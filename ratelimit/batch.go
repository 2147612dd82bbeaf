package ratelimit

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// errClosed is returned by a batching limiter after Close.
var errClosed = errors.New("limiter closed")

// batchReq is one Allow call waiting for its pipeline.
type batchReq struct {
	key         string
	limit, size int64
	d           Decision
	err         error
	done        chan struct{} // buffered (1): the flusher never blocks on it
	abandoned   atomic.Bool   // the caller stopped waiting; skip if not yet sent
}

// batcher coalesces concurrent Allow calls: each flusher takes one waiting
// request, adds every other request already queued (up to max), and sends
// them as one pipeline of EVALSHA commands. Nothing waits for a batch to
// fill, so a lone request goes out at once; under load the requests that
// arrive while pipelines are in flight form the next batch. Every request
// is still its own atomic script run, so the decisions are exactly those of
// the unbatched limiter.
type batcher struct {
	r      *Redis
	max    int
	queue  chan *batchReq
	stop   chan struct{}
	closed atomic.Bool
	wg     sync.WaitGroup
	pool   sync.Pool // *batchReq
}

func newBatcher(r *Redis, maxBatch, flushers int) *batcher {
	if maxBatch <= 0 {
		maxBatch = 128
	}
	if flushers <= 0 {
		flushers = 4
	}
	b := &batcher{
		r:     r,
		max:   maxBatch,
		queue: make(chan *batchReq, maxBatch*flushers),
		stop:  make(chan struct{}),
	}
	b.pool.New = func() any { return &batchReq{done: make(chan struct{}, 1)} }
	b.wg.Add(flushers)
	for range flushers {
		go b.loop()
	}
	return b
}

// allow queues one request and waits for its decision, at most Timeout.
func (b *batcher) allow(ctx context.Context, key string, limit, size int64) (Decision, error) {
	if b.closed.Load() {
		return Decision{}, unavailable("batching limiter", errClosed)
	}
	ctx, cancel := context.WithTimeout(ctx, b.r.timeout)
	defer cancel()
	req := b.pool.Get().(*batchReq)
	req.key, req.limit, req.size = key, limit, size
	select {
	case b.queue <- req:
	case <-ctx.Done():
		b.pool.Put(req)
		return Decision{}, unavailable("queueing for redis", ctx.Err())
	}
	select {
	case <-req.done:
		d, err := req.d, req.err
		req.key, req.d, req.err = "", Decision{}, nil
		b.pool.Put(req)
		return d, err
	case <-ctx.Done():
		// The flusher still owns req; leave it to the garbage collector.
		// If it has not been sent yet, it will not be.
		req.abandoned.Store(true)
		return Decision{}, unavailable("waiting for redis", ctx.Err())
	}
}

// loop is one flusher.
func (b *batcher) loop() {
	defer b.wg.Done()
	batch := make([]*batchReq, 0, b.max)
	for {
		select {
		case <-b.stop:
			return
		case req := <-b.queue:
			batch = batch[:0]
			for {
				if !req.abandoned.Load() {
					batch = append(batch, req)
				}
				if len(batch) == b.max {
					break
				}
				var ok bool
				select {
				case req, ok = <-b.queue:
				default:
				}
				if !ok {
					break
				}
			}
			if len(batch) > 0 {
				b.flush(batch)
			}
			clear(batch)
		}
	}
}

// flush sends batch as one pipeline and hands every request its result.
// Commands refused with NOSCRIPT did not run, so they are sent again with
// EVAL, which also loads the script.
func (b *batcher) flush(batch []*batchReq) {
	ctx, cancel := context.WithTimeout(context.Background(), b.r.timeout)
	defer cancel()
	cmds := b.pipeline(ctx, batch, false)
	var retry []*batchReq
	var retryIdx []int
	for i, cmd := range cmds {
		if isNoScript(cmd.Err()) {
			retry = append(retry, batch[i])
			retryIdx = append(retryIdx, i)
		}
	}
	if len(retry) > 0 {
		again := b.pipeline(ctx, retry, true)
		for j, i := range retryIdx {
			cmds[i] = again[j]
		}
	}
	for i, req := range batch {
		vals, err := cmds[i].Int64Slice()
		if err != nil {
			req.d, req.err = Decision{}, unavailable("running limiter script", err)
		} else {
			req.d, req.err = decode(vals, req.limit)
		}
		req.done <- struct{}{}
	}
}

// pipeline runs the script once per request in one round trip, with EVAL
// when eval is set and EVALSHA otherwise. Per-command errors are left in
// the returned commands.
func (b *batcher) pipeline(ctx context.Context, batch []*batchReq, eval bool) []*redis.Cmd {
	pipe := b.r.client.Pipeline()
	cmds := make([]*redis.Cmd, len(batch))
	for i, req := range batch {
		keys := []string{req.key}
		if eval {
			cmds[i] = windowScript.Eval(ctx, pipe, keys, req.limit, req.size, b.r.buckets)
		} else {
			cmds[i] = windowScript.EvalSha(ctx, pipe, keys, req.limit, req.size, b.r.buckets)
		}
	}
	_, _ = pipe.Exec(ctx)
	return cmds
}

// close stops the flushers and fails whatever is still queued.
func (b *batcher) close() {
	if b.closed.Swap(true) {
		return
	}
	close(b.stop)
	b.wg.Wait()
	for {
		select {
		case req := <-b.queue:
			req.d, req.err = Decision{}, unavailable("batching limiter", errClosed)
			req.done <- struct{}{}
		default:
			return
		}
	}
}
