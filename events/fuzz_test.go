package events_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/events"
)

// FuzzParseLeakReports: a hostile report body either parses into bounded
// entries with a token each, or is refused; it never panics.
func FuzzParseLeakReports(f *testing.F) {
	for _, s := range []string{
		`[{"token":"kg_x","type":"t","url":"u","source":"content"}]`, `[]`, `{}`, `null`, `[{"token":""}]`,
		`[{"token":"a"}] x`, `[{"token":1}]`, `[` + `{"token":"a"},` + `{"token":"b"}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rs, err := events.ParseLeakReports(body)
		if err != nil {
			return
		}
		if len(rs) > events.MaxLeakReports {
			t.Fatalf("%d reports", len(rs))
		}
		for _, r := range rs {
			if r.Token == "" || len(r.Token) > 512 {
				t.Fatalf("token %q", r.Token)
			}
		}
	})
}

// FuzzVerify: webhook signature headers from anyone: only the exact
// signature of the body verifies.
func FuzzVerify(f *testing.F) {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	f.Add("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", []byte(`{"test": 2432232314}`))
	f.Add("", "", "", []byte{})
	f.Add("a", "-1", "v1, v2,x v1,,", []byte("x"))
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		h := http.Header{}
		h.Set("webhook-id", id)
		h.Set("webhook-timestamp", ts)
		h.Set("webhook-signature", sig)
		err := events.Verify(secret, h, body, time.Unix(1614265330, 0), 5*time.Minute)
		if err != nil {
			return
		}
		want, _ := events.Sign(secret, id, 1614265330, body)
		if tsOK := ts == "1614265330"; !tsOK {
			// another timestamp within tolerance: recompute with it
			return
		}
		found := false
		for _, s := range strings.Fields(sig) {
			if s == want {
				found = true
			}
		}
		if !found {
			t.Fatalf("verified without the right signature: %q", sig)
		}
	})
}
