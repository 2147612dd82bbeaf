package ratelimit

import (
	"net/http"
	"strconv"
	"time"
)

// Canonical header keys, so WriteHeaders can set the map directly.
const (
	hdrPolicy    = "Ratelimit-Policy"
	hdrRateLimit = "Ratelimit"
	hdrLimit     = "X-Ratelimit-Limit"
	hdrRemaining = "X-Ratelimit-Remaining"
	hdrReset     = "X-Ratelimit-Reset"
	hdrRetry     = "Retry-After"
)

// PolicyName is the quota policy name in the RateLimit-Policy and RateLimit
// fields.
const PolicyName = "user"

// HeaderSet selects the rate-limit fields WriteHeaderSet writes.
type HeaderSet uint8

const (
	// HeadersIETF is RateLimit-Policy and RateLimit.
	HeadersIETF HeaderSet = 1 << iota
	// HeadersLegacy is X-RateLimit-Limit, X-RateLimit-Remaining and
	// X-RateLimit-Reset.
	HeadersLegacy
)

// WriteHeaders sets the rate-limit response fields for d, a decision made
// against window: the structured fields of draft-ietf-httpapi-ratelimit-headers
// (-08 and later)
//
//	RateLimit-Policy: "user";q=<limit>;w=<window seconds>
//	RateLimit: "user";r=<remaining>;t=<seconds until quota frees>
//
// the older X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset
// (the same seconds as t=), and, when d is not Allowed, Retry-After. All
// seconds are rounded up; Retry-After is at least 1.
//
// t=, X-RateLimit-Reset and Retry-After never exceed the window (w=): a
// client is never told to wait longer than the window it was told about.
// The limiter counts a request until the end of its sub-bucket's window,
// up to one sub-bucket (window/12) past its own window; that happens only
// when the quota was spent within the current sub-bucket, and a client that
// comes back after the window is then refused once more with a
// Retry-After of at most that sub-bucket.
func WriteHeaders(h http.Header, d Decision, window time.Duration) {
	WriteHeaderSet(h, d, window, HeadersIETF|HeadersLegacy)
}

// WriteHeaderSet is WriteHeaders writing only the fields of set, and
// Retry-After when d is not Allowed.
func WriteHeaderSet(h http.Header, d Decision, window time.Duration, set HeaderSet) {
	if set == 0 && d.Allowed {
		return
	}
	var buf [128]byte
	var end [6]int
	var names [6]string
	n := 0
	b := buf[:0]
	win := ceilSeconds(window)
	reset := d.ResetSeconds(window)
	field := func(name string) {
		names[n], end[n] = name, len(b)
		n++
	}
	if set&HeadersIETF != 0 {
		b = append(b, `"`+PolicyName+`";q=`...)
		b = strconv.AppendInt(b, d.Limit, 10)
		b = append(b, ";w="...)
		b = strconv.AppendInt(b, win, 10)
		field(hdrPolicy)
		b = append(b, `"`+PolicyName+`";r=`...)
		b = strconv.AppendInt(b, d.Remaining, 10)
		b = append(b, ";t="...)
		b = strconv.AppendInt(b, reset, 10)
		field(hdrRateLimit)
	}
	if set&HeadersLegacy != 0 {
		b = strconv.AppendInt(b, d.Limit, 10)
		field(hdrLimit)
		b = strconv.AppendInt(b, d.Remaining, 10)
		field(hdrRemaining)
		b = strconv.AppendInt(b, reset, 10)
		field(hdrReset)
	}
	if !d.Allowed {
		b = strconv.AppendInt(b, d.RetryAfterSeconds(window), 10)
		field(hdrRetry)
	}

	s := string(b) // the one string all values share
	vals := make([]string, n)
	start := 0
	for i := range n {
		vals[i] = s[start:end[i]]
		start = end[i]
		h[names[i]] = vals[i : i+1 : i+1]
	}
}

// ResetSeconds is d.Reset as the headers state it (t=, X-RateLimit-Reset):
// whole seconds, rounded up, never more than the window.
func (d Decision) ResetSeconds(window time.Duration) int64 {
	return min(ceilSeconds(d.Reset), ceilSeconds(window))
}

// RetryAfterSeconds is d.RetryAfter as Retry-After states it: whole
// seconds, rounded up, at least 1 and never more than the window.
func (d Decision) RetryAfterSeconds(window time.Duration) int64 {
	return max(min(ceilSeconds(d.RetryAfter), ceilSeconds(window)), 1)
}

// ceilSeconds returns d in whole seconds, rounded up; 0 for d <= 0.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}
