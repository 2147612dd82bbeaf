package ratelimit

import (
	"net/http"
	"testing"
	"time"
)

func TestWriteHeaders(t *testing.T) {
	tests := []struct {
		name   string
		d      Decision
		window time.Duration
		want   map[string]string
	}{
		{
			name:   "allowed",
			d:      Decision{Allowed: true, Limit: 600, Remaining: 42, Reset: 16*time.Second + time.Millisecond},
			window: 2 * time.Minute,
			want: map[string]string{
				"RateLimit-Policy":      `"user";q=600;w=120`,
				"RateLimit":             `"user";r=42;t=17`,
				"X-RateLimit-Limit":     "600",
				"X-RateLimit-Remaining": "42",
				"X-RateLimit-Reset":     "17",
				"Retry-After":           "",
			},
		},
		{
			name:   "rejected",
			d:      Decision{Limit: 10, Reset: 45 * time.Second, RetryAfter: 55 * time.Second},
			window: time.Minute,
			want: map[string]string{
				"RateLimit-Policy":      `"user";q=10;w=60`,
				"RateLimit":             `"user";r=0;t=45`,
				"X-RateLimit-Limit":     "10",
				"X-RateLimit-Remaining": "0",
				"X-RateLimit-Reset":     "45",
				"Retry-After":           "55",
			},
		},
		{
			// A sub-bucketed window counts a request until its bucket leaves,
			// up to one bucket past the window: the headers say the window.
			name:   "rejected, never longer than the window",
			d:      Decision{Limit: 600, Reset: 129 * time.Second, RetryAfter: 129 * time.Second},
			window: 2 * time.Minute,
			want: map[string]string{
				"RateLimit-Policy":  `"user";q=600;w=120`,
				"RateLimit":         `"user";r=0;t=120`,
				"X-RateLimit-Reset": "120",
				"Retry-After":       "120",
			},
		},
		{
			name:   "rejected, quota frees within a second",
			d:      Decision{Limit: 1, Reset: time.Millisecond, RetryAfter: time.Millisecond},
			window: 1500 * time.Millisecond,
			want: map[string]string{
				"RateLimit-Policy": `"user";q=1;w=2`,
				"RateLimit":        `"user";r=0;t=1`,
				"Retry-After":      "1",
			},
		},
		{
			name:   "rejected, retry rounds up to at least one second",
			d:      Decision{Limit: 1},
			window: time.Minute,
			want: map[string]string{
				"RateLimit":   `"user";r=0;t=0`,
				"Retry-After": "1",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			WriteHeaders(h, tt.d, tt.window)
			for k, v := range tt.want {
				if got := h.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
				if v != "" && len(h.Values(k)) != 1 {
					t.Errorf("%s has %d values", k, len(h.Values(k)))
				}
			}
		})
	}
}

func TestWriteHeadersReplaces(t *testing.T) {
	h := http.Header{}
	h.Set("RateLimit", "stale")
	WriteHeaders(h, Decision{Allowed: true, Limit: 5, Remaining: 4, Reset: time.Second}, time.Minute)
	if v := h.Values("RateLimit"); len(v) != 1 || v[0] != `"user";r=4;t=1` {
		t.Fatalf("RateLimit = %q", v)
	}
}

func TestWriteHeadersAllocs(t *testing.T) {
	d := Decision{Limit: 600, Remaining: 0, Reset: 17 * time.Second, RetryAfter: 17 * time.Second}
	h := make(http.Header, 8)
	n := testing.AllocsPerRun(100, func() { WriteHeaders(h, d, 2*time.Minute) })
	if n > 2 {
		t.Fatalf("WriteHeaders allocates %v times, want at most 2", n)
	}
}

func BenchmarkWriteHeaders(b *testing.B) {
	d := Decision{Allowed: true, Limit: 600, Remaining: 42, Reset: 17 * time.Second}
	h := make(http.Header, 8)
	b.ReportAllocs()
	for b.Loop() {
		WriteHeaders(h, d, 2*time.Minute)
	}
}

// TestWriteHeaderSet checks that only the chosen fields are written, that a
// refusal always carries Retry-After, and that the values are those of the
// full set.
func TestWriteHeaderSet(t *testing.T) {
	allowed := Decision{Allowed: true, Limit: 600, Remaining: 42, Reset: 17 * time.Second}
	refused := Decision{Limit: 600, Remaining: 0, Reset: 17 * time.Second, RetryAfter: 17 * time.Second}
	ietf := map[string]string{"Ratelimit-Policy": `"user";q=600;w=120`, "Ratelimit": `"user";r=42;t=17`}
	legacy := map[string]string{"X-Ratelimit-Limit": "600", "X-Ratelimit-Remaining": "42", "X-Ratelimit-Reset": "17"}
	for _, tc := range []struct {
		name string
		set  HeaderSet
		d    Decision
		want map[string]string
	}{
		{"ietf", HeadersIETF, allowed, ietf},
		{"legacy", HeadersLegacy, allowed, legacy},
		{"none", 0, allowed, map[string]string{}},
		{"none refused", 0, refused, map[string]string{"Retry-After": "17"}},
		{"ietf refused", HeadersIETF, refused, map[string]string{
			"Ratelimit-Policy": `"user";q=600;w=120`, "Ratelimit": `"user";r=0;t=17`, "Retry-After": "17"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			WriteHeaderSet(h, tc.d, 2*time.Minute, tc.set)
			if len(h) != len(tc.want) {
				t.Fatalf("fields %v, want %v", h, tc.want)
			}
			for name, v := range tc.want {
				if got := h[name]; len(got) != 1 || got[0] != v {
					t.Errorf("%s = %q, want %q", name, got, v)
				}
			}
		})
	}
}
