package auth

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Secret is one live signing secret of a user.
type Secret struct {
	// ID identifies the secret; Verify reports which one matched.
	ID string
	// Value is the secret exactly as issued: base64 of 32 random bytes.
	Value string
}

// Defaults for VerifyOptions.
const (
	DefaultMaxSkew = 5 * time.Minute
	// DefaultMaxBody bounds the body read to check a signed digest.
	DefaultMaxBody = 10 << 20
	// DefaultMaxPresignExpiry caps X-Amz-Expires of presigned SigV4 URLs
	// (AWS itself allows seven days; a leaked URL should not live that long).
	DefaultMaxPresignExpiry = 15 * time.Minute
)

// VerifyOptions tune Credential.Verify. The zero value is usable.
type VerifyOptions struct {
	// Now is the verification time. Zero means time.Now().
	Now time.Time
	// MaxSkew bounds the distance between a signed timestamp and Now.
	// Zero means DefaultMaxSkew (5m).
	MaxSkew time.Duration
	// OriginalURI is the request-target as the client sent it, before any
	// rewrite or prefix strip. Empty means r.RequestURI (or r.URL when that
	// is empty too). Absolute-form targets are reduced to path?query.
	OriginalURI string
	// Region and Service, when set, must match a SigV4 credential scope.
	Region, Service string
	// MaxBody bounds the body read to check a covered digest. Zero means
	// DefaultMaxBody (10 MiB); a larger body fails with ErrBodyTooLarge.
	MaxBody int64
	// Require names what the route requires a signature to cover besides
	// the method, target and body digest that every signature must cover:
	// header field names in lower case, or "@authority" (equivalently
	// "host"), which binds the Host for draft-cavage and RFC 9421 alike.
	// SigV4 always covers host; wallee schemes cover method and target.
	Require []string
	// MaxPresignExpiry caps X-Amz-Expires of presigned SigV4 URLs. Zero
	// means DefaultMaxPresignExpiry (15m).
	MaxPresignExpiry time.Duration
	// NoBody says that r stands for a request whose body keygate does not
	// get (a forward-auth subrequest): a signature that covers a body
	// digest then fails with ErrNoBody instead of being checked against an
	// empty body.
	NoBody bool
	// Body, when set, is the request's hold on the process-wide BodyBudget:
	// Verify reserves every byte it buffers to check a digest through it,
	// and fails with ErrBodyBudget when the budget (or the client's share
	// of it) is spent. Verify never releases it, on success or failure:
	// the buffered body lives as long as the request, so its owner
	// releases the hold once, when the request is done (defer
	// hold.Release()). Nil means unbounded.
	Body *BodyHold
	// SigV4ReadUndeclaredBody lets a SigV4 request with a body and without
	// an X-Amz-Content-Sha256 header be verified by reading (and holding)
	// its body first: the payload hash is part of what is signed, so the
	// signature cannot be checked before the body is read. False refuses
	// such a request with ErrUndeclaredPayload before any body byte is
	// read.
	SigV4ReadUndeclaredBody bool
}

// Verified describes a valid signature.
type Verified struct {
	// SecretID is the ID of the secret that produced the signature.
	SecretID string
	// Timestamp is the signed creation time.
	Timestamp time.Time
	// HasNonce is true when the signature carries a nonce (RFC 9421 nonce,
	// JWT jti): it is then single-use under replay mode "on".
	HasNonce bool
	// ReplayKey is a digest of the scheme and the signature value, the key
	// for a ReplayGuard.
	ReplayKey [32]byte
	// ReplayTTL is how long the replay key must be remembered: 2 × MaxSkew,
	// or longer when the signature stays valid longer (presigned SigV4).
	ReplayTTL time.Duration
}

// env is the per-call verification context shared by the schemes.
type env struct {
	now     time.Time
	skew    time.Duration
	target  string // origin-form request-target as sent
	region  string
	service string
	maxBody int64
	require []string
	presign time.Duration
	hold    *BodyHold
	noBody  bool
	// readUndeclared is VerifyOptions.SigV4ReadUndeclaredBody.
	readUndeclared bool
}

// signed is implemented by the parsed data of each signed scheme.
type signed interface {
	verify(r *http.Request, secrets []Secret, e *env) (Verified, error)
}

// Verify checks the signature of a signed credential against the user's
// live secrets (at most two are tried) and the request r. On success it
// returns which secret matched and what the replay check needs. It fails
// with ErrNotSigned for access keys and tokens, ErrNoSecret without a usable
// secret, ErrStale, ErrBadSignature, ErrMalformed, ErrScopeMismatch,
// ErrCoverage, ErrNoBody, ErrUndeclaredPayload, ErrBodyTooLarge or
// ErrBodyBudget.
func (c *Credential) Verify(r *http.Request, secrets []Secret, opt VerifyOptions) (Verified, error) {
	if c == nil || c.sig == nil {
		return Verified{}, ErrNotSigned
	}
	if len(secrets) == 0 {
		return Verified{}, ErrNoSecret
	}
	if len(secrets) > 2 {
		secrets = secrets[:2]
	}
	e := env{
		now:     opt.Now,
		skew:    opt.MaxSkew,
		target:  opt.OriginalURI,
		region:  opt.Region,
		service: opt.Service,
		maxBody: opt.MaxBody,
		require: opt.Require,
		presign: opt.MaxPresignExpiry,
		hold:    opt.Body,
		noBody:  opt.NoBody,

		readUndeclared: opt.SigV4ReadUndeclaredBody,
	}
	if e.presign <= 0 {
		e.presign = DefaultMaxPresignExpiry
	}
	if e.now.IsZero() {
		e.now = time.Now()
	}
	if e.skew <= 0 {
		e.skew = DefaultMaxSkew
	}
	if e.maxBody <= 0 {
		e.maxBody = DefaultMaxBody
	}
	if e.target == "" {
		e.target = r.RequestURI
		if e.target == "" && r.URL != nil {
			e.target = r.URL.RequestURI()
		}
	}
	if len(e.target) > maxTargetLen {
		return Verified{}, fmt.Errorf("request-target too long: %w", ErrMalformed)
	}
	e.target = originForm(e.target)
	v, err := c.sig.verify(r, secrets, &e)
	if err != nil {
		// What was buffered stays held: r.Body still serves those bytes
		// (to whoever drains or logs the request) until the owner of
		// opt.Body releases it.
		return Verified{}, err
	}
	if v.ReplayTTL < 2*e.skew {
		v.ReplayTTL = 2 * e.skew
	}
	return v, nil
}

// checkFresh rejects a timestamp more than skew away from now.
func checkFresh(ts, now time.Time, skew time.Duration) error {
	d := now.Sub(ts)
	if d > skew || d < -skew {
		return ErrStale
	}
	return nil
}

// replayKey digests the scheme and the signature bytes.
func replayKey(s Scheme, sig []byte) [32]byte {
	h := sha256.New()
	var b [1]byte
	b[0] = byte(s)
	h.Write(b[:])
	h.Write(sig)
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// restoredBody gives the upstream the bytes read for verification.
type restoredBody struct {
	*bytes.Reader
	io.Closer
	buf []byte // what Reader reads, for a second check of the same body
}

// BodyBudget bounds the bytes of request bodies that all requests together
// hold in memory to check signed digests, so that many slow or large
// signed uploads cannot exhaust the process, and the share of it that the
// requests of one client hold, so that one client cannot spend it all and
// lock everyone else's signed uploads out. Requests take from it through a
// BodyHold. Safe for concurrent use.
type BodyBudget struct {
	limit     int64
	perClient int64
	used      atomic.Int64 // written under mu; read without it by Used
	mu        sync.Mutex   // protects clients and the updates of used
	// clients is the bytes held per client, without zero entries: at most
	// one entry per client holding a byte.
	clients map[netip.Addr]int64
}

// NewBodyBudget returns a budget of limit bytes, of which the requests of
// one client may hold at most perClient (perClient <= 0 or above limit
// means limit).
func NewBodyBudget(limit, perClient int64) *BodyBudget {
	if perClient <= 0 || perClient > limit {
		perClient = limit
	}
	return &BodyBudget{limit: limit, perClient: perClient, clients: make(map[netip.Addr]int64)}
}

// Hold starts the hold of one request of client (the zero Addr is one
// client too: all requests whose client is unknown share its share). The
// request's owner must Release it when the request is done.
func (b *BodyBudget) Hold(client netip.Addr) *BodyHold {
	return &BodyHold{budget: b, client: client}
}

// Used reports the bytes currently held.
func (b *BodyBudget) Used() int64 {
	if b == nil {
		return 0
	}
	return b.used.Load()
}

// UsedBy reports the bytes the requests of client currently hold.
func (b *BodyBudget) UsedBy(client netip.Addr) int64 {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.clients[client]
}

// Limits returns the budget's limit and per-client share.
func (b *BodyBudget) Limits() (limit, perClient int64) {
	if b == nil {
		return 0, 0
	}
	return b.limit, b.perClient
}

// BodyHold is one request's hold on a BodyBudget: Verify takes from it
// each byte it buffers, and Release gives all of it back at once. It has
// one owner, the request, which releases it when the request is done,
// whatever the outcome (defer hold.Release()); Verify never releases it.
// A nil hold, or one on a nil budget, is unbounded. Not safe for
// concurrent use: it belongs to one request.
type BodyHold struct {
	budget *BodyBudget
	client netip.Addr
	held   int64
}

// take reserves n more bytes, or fails with ErrBodyBudget when the budget
// or the client's share cannot give them (then nothing is taken).
func (h *BodyHold) take(n int64) error {
	if h == nil || h.budget == nil {
		return nil
	}
	b := h.budget
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.clients[h.client]
	if c+n > b.perClient {
		return fmt.Errorf("%w: this client's share (%d bytes) is in use", ErrBodyBudget, b.perClient)
	}
	if b.used.Load()+n > b.limit {
		return ErrBodyBudget
	}
	b.used.Add(n)
	b.clients[h.client] = c + n
	h.held += n
	return nil
}

// Held reports the bytes the hold has taken and not released.
func (h *BodyHold) Held() int64 {
	if h == nil {
		return 0
	}
	return h.held
}

// Release gives back every byte the hold has taken. It is idempotent and
// nil-safe, so that it can be deferred unconditionally.
func (h *BodyHold) Release() {
	if h == nil || h.budget == nil || h.held == 0 {
		return
	}
	b := h.budget
	b.mu.Lock()
	if c := b.clients[h.client] - h.held; c > 0 {
		b.clients[h.client] = c
	} else {
		delete(b.clients, h.client)
	}
	b.used.Add(-h.held)
	b.mu.Unlock()
	h.held = 0
}

// hasBody reports whether r carries (or may carry) a body.
func hasBody(r *http.Request) bool {
	return r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody
}

// readChunk is how much of a body of unknown length is reserved from the
// budget at a time.
const readChunk = 32 << 10

// readBody reads at most e.maxBody bytes of r's body and restores r.Body so
// the upstream sees the same bytes. Memory is reserved through e.hold before
// it is allocated: all of a declared Content-Length at once, or 32 KiB at a
// time for a chunked body. Whatever it reserved stays held (the request's
// owner releases it), also when it fails.
func readBody(r *http.Request, e *env) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	max := e.maxBody
	if rb, ok := r.Body.(*restoredBody); ok && int64(len(rb.buf)) <= max {
		// Already read (and held) by an earlier check: the same bytes.
		return rb.buf, nil
	}
	if r.ContentLength > max {
		return nil, ErrBodyTooLarge
	}
	// reserved is what buf may grow to: the budget backs it, whatever
	// capacity append happens to give the slice.
	var (
		buf      []byte
		reserved int64
	)
	if r.ContentLength > 0 {
		if err := e.hold.take(r.ContentLength); err != nil {
			return nil, err
		}
		reserved = r.ContentLength
		buf = make([]byte, 0, reserved)
	}
	orig := r.Body
	var err error
	for {
		if int64(len(buf)) == reserved {
			if reserved > max {
				break
			}
			if r.ContentLength > 0 && reserved == r.ContentLength {
				// Declared length read: expect EOF without allocating.
				var probe [1]byte
				n, rerr := orig.Read(probe[:])
				if n > 0 {
					return nil, fmt.Errorf("body longer than its Content-Length: %w", ErrMalformed)
				}
				if err = rerr; err == nil {
					continue
				}
				break
			}
			grow := min(int64(readChunk), max+1-reserved)
			if err := e.hold.take(grow); err != nil {
				r.Body = struct {
					io.Reader
					io.Closer
				}{io.MultiReader(bytes.NewReader(buf), orig), orig}
				return nil, err
			}
			reserved += grow
			buf = slices.Grow(buf, int(grow))
		}
		var n int
		n, err = orig.Read(buf[len(buf):reserved])
		buf = buf[:len(buf)+n]
		if err != nil {
			break
		}
	}
	if err == io.EOF {
		err = nil
	}
	if int64(len(buf)) > max {
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf), orig), orig}
		return nil, ErrBodyTooLarge
	}
	r.Body = &restoredBody{bytes.NewReader(buf), orig, buf}
	if err != nil {
		return nil, fmt.Errorf("reading body: %w", err)
	}
	return buf, nil
}

// bufPool holds scratch buffers for signing strings and canonical requests.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > 64<<10 {
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}
