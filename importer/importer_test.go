package importer

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
)

var now = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func fingerprint(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:16])
}

func sample(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "import", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func read(t *testing.T, source, file string, opts Options) Result {
	t.Helper()
	opts.Fingerprint, opts.Now, opts.Tenant = fingerprint, now, "acme"
	res, err := Read(source, sample(t, file), opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// findKey returns the key of the batch that keygate would match the
// original value with (in clear, or by its legacy hash).
func findKey(b keys.ImportBatch, original string) (*keys.ImportUser, *keys.ImportKey) {
	for i := range b.Users {
		for j := range b.Users[i].Keys {
			k := &b.Users[i].Keys[j]
			if k.Plaintext == original {
				return &b.Users[i], k
			}
			if k.HashScheme != "" {
				ls, err := keys.ParseLegacyScheme(k.HashScheme)
				if err == nil && string(ls.Sum(original)) == string(k.Hash) {
					return &b.Users[i], k
				}
			}
		}
	}
	return nil, nil
}

func TestKong(t *testing.T) {
	res := read(t, "kong", "kong.yaml", Options{Expires: now.AddDate(1, 0, 0)})
	b := res.Batch
	if len(b.Users) != 2 || len(b.Invalid) != 0 {
		t.Fatalf("users %d, invalid %v", len(b.Users), b.Invalid)
	}
	u, k := findKey(b, "Kk4RLVM9E8xWf7E0M9jIyWv8MXSMdDB2J")
	if u == nil || u.ExternalID != "cust-1001" || u.User.Name != "acme-mobile" || u.User.RequestLimit != 120 ||
		strings.Join(u.User.CustomerRoles, ",") != "gold,reporting" || strings.Join(u.User.Tags, ",") != "billing,mobile" {
		t.Fatalf("consumer: %+v", u)
	}
	if k.ExternalID != "6b9443ae-73f0-4db6-af00-4f1e3a415dbb" || !k.ExpiresAt.Equal(now.Add(31536000*time.Second)) {
		t.Fatalf("credential: %+v", k)
	}
	if u, k := findKey(b, "reporting-bot-key-2f8d7c1e"); u == nil || u.ExternalID != "reporting-bot" || !k.ExpiresAt.Equal(now.AddDate(1, 0, 0)) {
		t.Fatalf("second consumer: %+v %+v", u, k)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "hour limit 1000 not imported") {
		t.Fatalf("warnings: %q", res.Warnings)
	}

	res = read(t, "kong", "kong-1.1.json", Options{})
	if u, k := findKey(res.Batch, "4174348a-9222-4e81-b33e-5d72d2fd7f1e"); u == nil || u.User.Name != "anon" || len(u.User.CustomerRoles) != 1 || !k.ExpiresAt.IsZero() {
		t.Fatalf("1.1 top-level credential: %+v %+v", u, k)
	}
	if res.MissingExpiry != 2 {
		t.Fatalf("missing expiry: %d", res.MissingExpiry)
	}
	if _, err := Read("kong", []byte(`_format_version: "4.0"`), Options{Fingerprint: fingerprint}); err == nil {
		t.Fatal("format 4.0 accepted")
	}
}

func TestTyk(t *testing.T) {
	res := read(t, "tyk", "tyk-redis.json", Options{Expires: now.AddDate(1, 0, 0)})
	b := res.Batch
	if len(b.Users) != 2 || len(b.Invalid) != 0 {
		t.Fatalf("users %+v, invalid %v", b.Users, b.Invalid)
	}
	for original, scheme := range map[string]string{
		"eyJvcmciOiI1ZTlkOTU0NGExZGNkNjAwMDFkMGVkMjAiLCJpZCI6ImI0NjJiZjE0ZGVkMzQ1ODFhNmNhZWVkNWNmYjk1OTZmIiwiaCI6Im11cm11cjY0In0=": keys.HashMurmur64,
		"eyJvcmciOiI1ZTlkOTU0NGExZGNkNjAwMDFkMGVkMjAiLCJpZCI6IjBjN2U1YThmM2IyZDRlNmE5YzFmN2IzZDVlOGEyYzRmIiwiaCI6InNoYTI1NiJ9":     keys.HashSHA256,
		"5e9d9544a1dcd60001d0ed20a6ab77653d7da4b39ad1af9c98bba1a8":                                                                 keys.HashMurmur32,
	} {
		u, k := findKey(b, original)
		if u == nil || k.HashScheme != scheme {
			t.Fatalf("%s key not found: %+v", scheme, k)
		}
	}
	u, _ := findKey(b, "5e9d9544a1dcd60001d0ed20a6ab77653d7da4b39ad1af9c98bba1a8")
	if u.User.Name != "legacy-partner" || u.User.RequestLimit != 0 {
		t.Fatalf("legacy partner: %+v", u.User)
	}
	u, k := findKey(b, "eyJvcmciOiI1ZTlkOTU0NGExZGNkNjAwMDFkMGVkMjAiLCJpZCI6ImI0NjJiZjE0ZGVkMzQ1ODFhNmNhZWVkNWNmYjk1OTZmIiwiaCI6Im11cm11cjY0In0=")
	if u.ExternalID != "alias:acme-billing" || len(u.Keys) != 2 || u.User.RequestLimit != 2000 || !strings.Contains(string(k.Meta), `"customer":"acme"`) {
		t.Fatalf("alias user: %+v", u)
	}

	res = read(t, "tyk", "tyk-keys-plain.json", Options{TykPlainKeys: true})
	if u, k := findKey(res.Batch, "5e9d9544a1dcd60001d0ed20b0e1f1a8c3d24e7f9a6b5c4d3e2f1a0b"); u == nil || k.Plaintext == "" || u.User.RequestLimit != 200 {
		t.Fatalf("plain Tyk key: %+v", u)
	}
}

func TestUnkey(t *testing.T) {
	exp := time.UnixMilli(4102444800000)
	res := read(t, "unkey", "unkey.json", Options{Expires: now.AddDate(1, 0, 0)})
	b := res.Batch
	if len(b.Users) != 1 || len(b.Users[0].Keys) != 2 {
		t.Fatalf("users: %+v", b.Users)
	}
	u, k := findKey(b, "unkey_2V1k9nQ4cGZ7tR3pWb8sXy6")
	if u == nil || u.ExternalID != "acme" || k.Name != "acme production" || !k.ExpiresAt.Equal(exp) || u.User.RequestLimit != 200 ||
		strings.Join(u.User.CustomerRoles, ",") != "admin.read" || len(u.User.AccessControlEntities) != 2 {
		t.Fatalf("plaintext key: %+v %+v", u, k)
	}
	if _, k := findKey(b, "unkey_3ZbCDh8LuC3y2Q4wKkD7ngYF"); k == nil || k.HashScheme != keys.HashSHA256 {
		t.Fatalf("hashed key: %+v", k)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "credits") {
		t.Fatalf("warnings: %q", res.Warnings)
	}
	res = read(t, "unkey", "unkey-v2.json", Options{})
	if u, k := findKey(res.Batch, "unkey_3ZbCDh8LuC3y2Q4wKkD7ngYF"); u == nil || u.ExternalID != "acme" || !k.ExpiresAt.Equal(exp) || u.User.RequestLimit != 1200 {
		t.Fatalf("v2 key: %+v %+v", u, k)
	}
}

func TestKrakenD(t *testing.T) {
	res := read(t, "krakend", "krakend.json", Options{Expires: now.AddDate(1, 0, 0)})
	b := res.Batch
	if len(b.Users) != 2 {
		t.Fatalf("users: %+v", b.Users)
	}
	u, k := findKey(b, "4d2c61e1-34c4-e96c-9456-15bd983c5019")
	if u == nil || u.User.Name != "ACME Inc." || k.HashScheme != "sha256:"+hex.EncodeToString([]byte("mySalt")) || strings.Join(u.User.CustomerRoles, ",") != "role1,role2" {
		t.Fatalf("key: %+v %+v", u, k)
	}
	if u, _ := findKey(b, "58427514-be32-0b52-b7c6-d01fada30497"); u == nil || u.User.Name != "Administrators Inc." {
		t.Fatalf("second key: %+v", u)
	}
	if u, _ := findKey(b, "4d2c61e1-34c4-e96c-9456-15bd983c5018"); u != nil {
		t.Fatal("a wrong key matched")
	}
}

func TestCSV(t *testing.T) {
	res := read(t, "csv", "users.csv", Options{})
	b := res.Batch
	if len(b.Users) != 2 || len(b.Invalid) != 0 {
		t.Fatalf("users %+v invalid %v", b.Users, b.Invalid)
	}
	u, k := findKey(b, "csv-billing-key-7f3a9c2e41")
	if u == nil || u.User.ID != "svc-billing" || u.Ref != "line 2" || len(u.Keys) != 2 || k.ExternalID != "svc-billing/primary" ||
		strings.Join(u.User.CustomerRoles, ",") != "billing,reports" || u.User.Type != keys.UserService {
		t.Fatalf("csv user: %+v", u)
	}
	if _, k := findKey(b, "csv-legacy-key-9d2f61b0a7"); k == nil || k.Ref != "line 3" || !k.ExpiresAt.Equal(time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("hashed csv key: %+v", k)
	}
	if res.MissingExpiry != 1 {
		t.Fatalf("missing expiry %d", res.MissingExpiry)
	}
	bad := "user_id,user_name,key_name,key\nok-1,ok,k,csv-good-key-000001\nbad id!,x,k,csv-bad-key-0000002\nok-2,ok2,k,\n"
	res, err := Read("csv", []byte(bad), Options{Fingerprint: fingerprint, Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Batch.Users) != 1 || len(res.Batch.Invalid) != 2 || res.Batch.Invalid[0].Ref != "line 3" || res.Batch.Invalid[1].Ref != "line 4" {
		t.Fatalf("bad rows: %+v", res.Batch.Invalid)
	}
	if _, err := Read("csv", []byte("user_id,password\n"), Options{Fingerprint: fingerprint}); err == nil {
		t.Fatal("unknown column accepted")
	}
}

// TestLimitMapping: a limit maps when the window is a whole number of
// periods, and never for longer periods.
func TestLimitMapping(t *testing.T) {
	r := &reader{opts: Options{Window: 2 * time.Minute}}
	for _, tc := range []struct {
		n      float64
		period time.Duration
		want   int64
		ok     bool
	}{
		{60, time.Minute, 120, true}, {5, time.Second, 600, true}, {100, 2 * time.Minute, 100, true},
		{1000, time.Hour, 0, false}, {10, 90 * time.Second, 0, false}, {0.5, time.Second, 60, true}, {0.3, time.Minute, 0, false},
	} {
		if got, ok := r.limit(tc.n, tc.period); got != tc.want || ok != tc.ok {
			t.Errorf("limit(%v, %v) = %d, %v", tc.n, tc.period, got, ok)
		}
	}
}
