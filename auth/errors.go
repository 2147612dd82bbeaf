package auth

import "errors"

// Sentinel errors. Detect and Verify wrap them with a short, non-secret
// context; test them with errors.Is. The gateway answers 401 for all of
// them except ErrAmbiguous (400), ErrBodyTooLarge (413), and ErrBodyBudget,
// ErrReplayStore and ErrReplayFull (503).
var (
	// ErrNoCredential: the request carries no credential of an enabled scheme.
	ErrNoCredential = errors.New("no credential")
	// ErrMalformed: a credential is present but cannot be parsed (bad base64,
	// bad structure, unsupported algorithm or component, oversized header).
	ErrMalformed = errors.New("malformed credential")
	// ErrAmbiguous: the request carries two different credentials.
	ErrAmbiguous = errors.New("more than one credential")
	// ErrBadSignature: no secret produces the signature, or a signed claim
	// (method, path, body digest) does not match the request.
	ErrBadSignature = errors.New("bad signature")
	// ErrStale: the signed timestamp is outside ±MaxSkew, or the signature expired.
	ErrStale = errors.New("stale or expired signature")
	// ErrScopeMismatch: a SigV4 credential scope names another region or service.
	ErrScopeMismatch = errors.New("credential scope mismatch")
	// ErrCoverage: the signature is valid but does not cover what a signed
	// request must bind: its method and target, the body digest when it has
	// a body, and whatever else the route requires (VerifyOptions.Require).
	ErrCoverage = errors.New("signature does not cover the request")
	// ErrBodyTooLarge: a covered body digest needs a body larger than MaxBody.
	ErrBodyTooLarge = errors.New("body too large to verify")
	// ErrNoBody: the signature covers a body digest, and the request was
	// verified without its body (VerifyOptions.NoBody: a forward-auth
	// subrequest carries none).
	ErrNoBody = errors.New("signature covers a body the verifier does not get")
	// ErrBodyBudget: the process-wide budget for buffered request bodies
	// (BodyBudget) is spent; the request may succeed later.
	ErrBodyBudget = errors.New("body buffer budget exhausted")
	// ErrUndeclaredPayload: a SigV4 request has a body but no
	// X-Amz-Content-Sha256 header, and the verifier does not read bodies
	// before their signature is checked
	// (VerifyOptions.SigV4ReadUndeclaredBody).
	ErrUndeclaredPayload = errors.New("sigv4 body without x-amz-content-sha256")
	// ErrNotSigned: Verify was called on an access key or access token.
	ErrNotSigned = errors.New("credential is not a signature")
	// ErrNoSecret: Verify was given no usable secret.
	ErrNoSecret = errors.New("no usable secret")
	// ErrReplayed: the signature was already used (returned by callers, not by
	// Verify; ReplayGuard.Remember reports it as fresh == false).
	ErrReplayed = errors.New("signature replayed")
	// ErrReplayStore: the replay store could not answer; wrapped with the cause.
	ErrReplayStore = errors.New("replay store unavailable")
	// ErrReplayFull: an in-process replay guard holds as many unexpired keys
	// as it may and cannot remember a new one; the request is refused
	// rather than let through unguarded.
	ErrReplayFull = errors.New("replay guard full")
)
