package importer

import (
	"strings"
	"testing"
	"time"
)

// fuzzRead reads data as source and checks what must hold for any input:
// no panic; every user has an external id; no key value a reader took
// appears in a warning or in an invalid entry's ref or reason (readers
// never echo secrets).
func fuzzRead(t *testing.T, source string, data []byte, plain bool) {
	res, err := Read(source, data, Options{
		Tenant: "acme", Fingerprint: fingerprint, Now: now, Expires: now.Add(time.Hour), TykPlainKeys: plain,
	})
	if err != nil {
		return
	}
	var secrets []string
	for _, u := range res.Batch.Users {
		if u.ExternalID == "" {
			t.Fatalf("user %s without an external id", u.Ref)
		}
		for _, k := range u.Keys {
			if k.Plaintext == "" && k.HashScheme == "" {
				t.Fatalf("key %s with neither value nor hash", k.Ref)
			}
			if len(k.Plaintext) >= 12 {
				secrets = append(secrets, k.Plaintext)
			}
		}
	}
	for _, s := range secrets {
		for _, w := range res.Warnings {
			if strings.Contains(w, s) {
				t.Fatalf("a warning shows a key: %q", w)
			}
		}
		for _, it := range res.Batch.Invalid {
			if strings.Contains(it.Ref, s) || strings.Contains(it.Reason, s) {
				t.Fatalf("an invalid entry shows a key: %+v", it)
			}
		}
	}
}

func seed(f *testing.F, files ...string) {
	for _, name := range files {
		f.Add(sample(f, name))
	}
}

func FuzzKong(f *testing.F) {
	seed(f, "kong.yaml", "kong-1.1.json")
	f.Add([]byte("_format_version: \"3.0\"\nconsumers:\n- username: x\n  keyauth_credentials:\n  - key: k\n    ttl: -5\n"))
	f.Fuzz(func(t *testing.T, data []byte) { fuzzRead(t, "kong", data, false) })
}

func FuzzTyk(f *testing.F) {
	seed(f, "tyk-redis.json", "tyk-keys-plain.json")
	f.Add([]byte(`{"apikey-zz": "{\"alias\": 1}"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzRead(t, "tyk", data, false)
		fuzzRead(t, "tyk", data, true)
	})
}

func FuzzUnkey(f *testing.F) {
	seed(f, "unkey.json", "unkey-v2.json")
	f.Add([]byte(`[{"hash": {"value": "", "variant": "sha256_base64"}, "ratelimit": {"refillRate": 1e308, "refillInterval": 1}}]`))
	f.Fuzz(func(t *testing.T, data []byte) { fuzzRead(t, "unkey", data, false) })
}

func FuzzKrakenD(f *testing.F) {
	seed(f, "krakend.json")
	f.Add([]byte(`{"keys": [{"key": "plain-key-123456", "roles": ["a b"]}], "hash": "plain", "salt": "s"}`))
	f.Fuzz(func(t *testing.T, data []byte) { fuzzRead(t, "krakend", data, false) })
}

func FuzzCSV(f *testing.F) {
	seed(f, "users.csv")
	f.Add([]byte("user_id,key_name,key\n\"a\"b,c,d\n"))
	f.Fuzz(func(t *testing.T, data []byte) { fuzzRead(t, "csv", data, false) })
}
