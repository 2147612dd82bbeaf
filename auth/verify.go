package auth

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
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
	// Budget, when set, bounds the bytes that all requests together buffer
	// for digest checks; past it Verify fails with ErrBodyBudget. On
	// success the caller releases Verified.Held once the request is done.
	Budget *BodyBudget
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
	// Held is the number of bytes of VerifyOptions.Budget that the buffered
	// body holds; release them with Budget.Release when the request is done.
	Held int64
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
	budget  *BodyBudget
	held    int64 // taken from budget
	noBody  bool
}

// signed is implemented by the parsed data of each signed scheme.
type signed interface {
	verify(r *http.Request, secrets []Secret, e *env) (Verified, error)
}

// Verify checks the signature of a signed credential against the user's
// live secrets (at most two are tried) and the request r. On success it
// returns which secret matched and what the replay check needs. It fails
// with ErrNotSigned for access keys and tokens, ErrNoSecret without a usable
// secret, ErrStale, ErrBadSignature, ErrMalformed, ErrScopeMismatch or
// ErrBodyTooLarge.
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
		budget:  opt.Budget,
		noBody:  opt.NoBody,
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
		// The request is refused: its buffered body goes with it.
		e.budget.Release(e.held)
		return Verified{}, err
	}
	v.Held = e.held
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
}

// BodyBudget bounds the bytes of request bodies that all requests together
// hold in memory to check signed digests, so that many slow or large
// signed uploads cannot exhaust the process. Safe for concurrent use.
type BodyBudget struct {
	limit int64
	used  atomic.Int64
}

// NewBodyBudget returns a budget of limit bytes.
func NewBodyBudget(limit int64) *BodyBudget { return &BodyBudget{limit: limit} }

// take reserves n bytes, or reports false when they are not available.
// A nil budget is unbounded.
func (b *BodyBudget) take(n int64) bool {
	if b == nil {
		return true
	}
	for {
		u := b.used.Load()
		if u+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

// Release returns n bytes taken by Verify (see VerifyOptions.Held).
func (b *BodyBudget) Release(n int64) {
	if b != nil && n > 0 {
		b.used.Add(-n)
	}
}

// Used reports the bytes currently held.
func (b *BodyBudget) Used() int64 {
	if b == nil {
		return 0
	}
	return b.used.Load()
}

// hasBody reports whether r carries (or may carry) a body.
func hasBody(r *http.Request) bool {
	return r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody
}

// readChunk is how much of a body of unknown length is reserved from the
// budget at a time.
const readChunk = 32 << 10

// readBody reads at most e.maxBody bytes of r's body and restores r.Body so
// the upstream sees the same bytes. Memory is reserved from e.budget before
// it is allocated: all of a declared Content-Length at once, or 32 KiB at a
// time for a chunked body.
func readBody(r *http.Request, e *env) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	max := e.maxBody
	if rb, ok := r.Body.(*restoredBody); ok && rb.Reader.Size() <= max {
		// Already read by an earlier Verify: read it again from the start.
		buf := make([]byte, rb.Reader.Size())
		_, _ = rb.Reader.ReadAt(buf, 0)
		return buf, nil
	}
	if r.ContentLength > max {
		return nil, ErrBodyTooLarge
	}
	reserve := func(n int64) bool {
		if !e.budget.take(n) {
			return false
		}
		e.held += n
		return true
	}
	// reserved is what buf may grow to: the budget backs it, whatever
	// capacity append happens to give the slice.
	var (
		buf      []byte
		reserved int64
	)
	if r.ContentLength > 0 {
		if !reserve(r.ContentLength) {
			return nil, ErrBodyBudget
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
			if !reserve(grow) {
				r.Body = struct {
					io.Reader
					io.Closer
				}{io.MultiReader(bytes.NewReader(buf), orig), orig}
				return nil, ErrBodyBudget
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
	r.Body = &restoredBody{bytes.NewReader(buf), orig}
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
