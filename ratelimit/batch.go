package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// errClosed is returned by a batching limiter after Close.
var errClosed = errors.New("limiter closed")

// errBacklog is returned (wrapped in ErrOverloaded) when so many calls are
// waiting that the queue is full: waiting longer would only add latency.
var errBacklog = errors.New("too many calls waiting")

// batchReq is one Allow call waiting for its batch.
type batchReq struct {
	ask
	// deadline is when the caller's QueueTimeout ends: a flusher fails the
	// request instead of sending it after that (ErrOverloaded). Once sent,
	// a request has Timeout for Redis to answer (see flush).
	deadline  time.Time
	g         grant
	err       error
	done      chan struct{} // buffered (1): the flusher never blocks on it
	abandoned atomic.Bool   // the caller stopped waiting; skip if not yet sent
}

// batcher coalesces concurrent Allow calls: each flusher takes one waiting
// request, adds every other request already queued (up to max), and decides
// them in one round trip (see flush). Nothing waits for a batch to
// fill, so a lone request goes out at once; under load the requests that
// arrive while a batch is in flight form the next one. Every request is
// decided atomically and in turn, so the decisions are exactly those of the
// unbatched limiter.
//
// Two budgets bound a call: QueueTimeout for its wait in the queue, which
// under a burst grows with the batches in flight ahead of it, and Timeout
// for Redis to answer once its batch is sent. A request still queued at
// its deadline is failed with ErrOverloaded, which says nothing about Redis;
// only a batch that was sent and failed is evidence against Redis.
//
// A batch that fails although another batch got its answer after it was
// sent (Redis, or this machine, is busy, not down) is run once more with
// QueueTimeout/2; a Redis that answers nothing fails a batch after one
// Timeout.
//
// Callers wait without a timer of their own: a request's deadline travels
// with it, the queue is FIFO, and every batch ends within Timeout (or
// Timeout + QueueTimeout/2 when it is run again) of its start, so a request
// is answered within 1.5 × QueueTimeout + Timeout. That bound needs a client that
// stops at the context deadline; with other clients the caller keeps its
// own timer.
type batcher struct {
	r     *Redis
	max   int
	queue chan *batchReq
	stop  chan struct{}
	// closing is held for reading while a call enqueues and for writing
	// while Close marks the batcher closed, so that no call can slip into
	// the queue after Close has drained it.
	closing sync.RWMutex
	closed  atomic.Bool
	wg      sync.WaitGroup
	pool    sync.Pool // *batchReq
	// answeredAt is when a batch last got Redis's answer (unix
	// nanoseconds): a batch that failed after another was answered is tried
	// once more (see runOnce). retries counts those.
	answeredAt atomic.Int64
	retries    atomic.Uint64
}

// answered records that a batch got its answer at t (unix nanoseconds).
func (b *batcher) answered(t int64) {
	for {
		a := b.answeredAt.Load()
		if t <= a || b.answeredAt.CompareAndSwap(a, t) {
			return
		}
	}
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
		queue: make(chan *batchReq, 8*maxBatch*flushers),
		stop:  make(chan struct{}),
	}
	b.pool.New = func() any { return &batchReq{done: make(chan struct{}, 1)} }
	b.wg.Add(flushers)
	for range flushers {
		go b.loop()
	}
	return b
}

// giveBack queues the return of leased slots without waiting for it; when
// the queue is full the slots are dropped, which only leaves them counted.
func (b *batcher) giveBack(a ask) {
	req := &batchReq{ask: a, deadline: time.Now().Add(b.r.queueTimeout), done: make(chan struct{}, 1)}
	b.closing.RLock()
	defer b.closing.RUnlock()
	if b.closed.Load() {
		return
	}
	select {
	case b.queue <- req:
	default:
	}
}

// decide queues one request and waits for its answer, at most QueueTimeout
// + Timeout.
func (b *batcher) decide(ctx context.Context, a ask) (grant, error) {
	req := b.pool.Get().(*batchReq)
	req.ask = a
	req.deadline = time.Now().Add(b.r.queueTimeout)
	b.closing.RLock()
	if b.closed.Load() {
		b.closing.RUnlock()
		b.pool.Put(req)
		return grant{}, unavailable("batching limiter", errClosed)
	}
	select {
	case b.queue <- req:
		b.closing.RUnlock()
	default:
		b.closing.RUnlock()
		b.pool.Put(req)
		return grant{}, overloaded("queueing for redis", errBacklog)
	}
	var timeout <-chan time.Time
	if !b.r.bounded {
		t := time.NewTimer(b.r.queueTimeout + b.r.timeout)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-req.done:
		g, err := req.g, req.err
		req.ask, req.g, req.err = ask{}, grant{}, nil
		b.pool.Put(req)
		return g, err
	case <-ctx.Done():
		// The flusher still owns req; leave it to the garbage collector.
		// If it has not been sent yet, it will not be.
		req.abandoned.Store(true)
		return grant{}, unavailable("waiting for redis", ctx.Err())
	case <-timeout:
		req.abandoned.Store(true)
		return grant{}, unavailable("waiting for redis", context.DeadlineExceeded)
	}
}

// loop is one flusher.
func (b *batcher) loop() {
	defer b.wg.Done()
	batch := make([]*batchReq, 0, b.max)
	var buf scriptArgs
	for {
		select {
		case <-b.stop:
			return
		case req := <-b.queue:
			batch = batch[:0]
			now := time.Now()
			for {
				switch {
				case req.abandoned.Load():
				case !now.Before(req.deadline):
					req.g, req.err = grant{}, overloaded("queued for redis", context.DeadlineExceeded)
					req.done <- struct{}{}
				default:
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
				b.flush(batch, &buf)
			}
			clear(batch)
		}
	}
}

// flush decides every request of batch in one round trip and hands each
// its result. On a single Redis (or a sentinel-managed one) that is one
// script run per bucket size, nearly always exactly one: the script decides
// the requests in turn, each exactly as its own run would, and Redis parses
// one command instead of len(batch). A cluster cannot run one script over
// keys in different slots, so there each request is its own EVALSHA in one
// pipeline, which go-redis splits by node.
//
// A batch has Timeout from now: its requests were all still within their
// queue deadlines when it was formed, and Redis gets its full time.
func (b *batcher) flush(batch []*batchReq, buf *scriptArgs) {
	deadline := time.Now().Add(b.r.timeout)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if !b.r.multiKey {
		b.pipelined(ctx, batch)
		return
	}
	for rest := batch; len(rest) > 0; {
		size, same := rest[0].size, 0
		for i, req := range rest {
			if req.size == size {
				rest[i], rest[same] = rest[same], rest[i]
				same++
			}
		}
		b.runOnce(ctx, rest[:same], buf)
		rest = rest[same:]
	}
}

// scriptArgs are a flusher's reusable argument buffers.
type scriptArgs struct {
	keys []string
	args []any
}

// runOnce decides group, whose requests share one bucket size, with one run
// of the script.
func (b *batcher) runOnce(ctx context.Context, group []*batchReq, buf *scriptArgs) {
	buf.keys = buf.keys[:0]
	buf.args = append(buf.args[:0], group[0].size, b.r.buckets)
	for _, req := range group {
		buf.keys = append(buf.keys, req.key)
		buf.args = append(buf.args, req.limit, req.want, req.bucket)
	}
	began := time.Now().UnixNano()
	vals, err := windowScript.Run(ctx, b.r.client, buf.keys, buf.args...).Int64Slice()
	if err != nil && b.answeredAt.Load() > began {
		// Another batch got its answer while this one waited: Redis is busy
		// (or this machine is), not down. Try once more with more time. If
		// the first run did reach Redis, its requests are counted twice:
		// quota spent on requests served once, never the other way round.
		rctx, cancel := context.WithTimeout(context.Background(), max(b.r.timeout, b.r.queueTimeout/2))
		vals, err = windowScript.Run(rctx, b.r.client, buf.keys, buf.args...).Int64Slice()
		cancel()
		b.retries.Add(1)
	}
	if err == nil {
		b.answered(time.Now().UnixNano())
	}
	if err == nil && len(vals) != replyLen*len(group) {
		err = fmt.Errorf("limiter script returned %d values for %d requests", len(vals), len(group))
	}
	for i, req := range group {
		if err != nil {
			req.g, req.err = grant{}, scriptErr(err)
		} else {
			req.g, req.err = decode(vals[replyLen*i:replyLen*(i+1)], req.limit), nil
		}
		req.done <- struct{}{}
	}
	clear(buf.keys)
	clear(buf.args)
}

// pipelined sends one EVALSHA per request in one pipeline. Commands refused
// with NOSCRIPT did not run, so they are sent again with EVAL, which also
// loads the script.
func (b *batcher) pipelined(ctx context.Context, batch []*batchReq) {
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
		switch {
		case err != nil:
			req.g, req.err = grant{}, scriptErr(err)
		case len(vals) != replyLen:
			req.g, req.err = grant{}, fmt.Errorf("%w: limiter script returned %d values, want %d", ErrUnavailable, len(vals), replyLen)
		default:
			req.g, req.err = decode(vals, req.limit), nil
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
			cmds[i] = windowScript.Eval(ctx, pipe, keys, req.size, b.r.buckets, req.limit, req.want, req.bucket)
		} else {
			cmds[i] = windowScript.EvalSha(ctx, pipe, keys, req.size, b.r.buckets, req.limit, req.want, req.bucket)
		}
	}
	_, _ = pipe.Exec(ctx)
	return cmds
}

// close stops the flushers and fails whatever is still queued.
func (b *batcher) close() {
	b.closing.Lock()
	already := b.closed.Swap(true)
	b.closing.Unlock()
	if already {
		return
	}
	close(b.stop)
	b.wg.Wait()
	for {
		select {
		case req := <-b.queue:
			req.g, req.err = grant{}, unavailable("batching limiter", errClosed)
			req.done <- struct{}{}
		default:
			return
		}
	}
}
