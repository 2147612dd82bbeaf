// Package importer reads the users and keys of another API gateway, in the
// shape that gateway itself exports them, into a keys.ImportBatch that
// keys.Store.Import applies to one tenant:
//
//   - kong: a decK state file (YAML or JSON, _format_version 1.1, 2.1 or
//     3.0): consumers with their keyauth_credentials, acls and
//     rate-limiting plugin, nested or at the top level;
//   - tyk: key sessions as Tyk's Redis holds them ({"apikey-<hash>":
//     session}) or as its API lists them ({"keys":[{"key_id","data"}]});
//   - unkey: the body of Unkey's key migration (v1 migrations.createKeys,
//     an array; v2 keys.migrateKeys, {"keys":[…]});
//   - krakend: a KrakenD configuration with the enterprise auth/api-keys
//     component (or that component alone), its hash and salt;
//   - csv: a header line user_id,user_name,user_type,role,customer_roles,
//     key_name,key,key_sha256,expires_at and one key per line.
//
// A reader never fails a whole file for one bad entry: it lists the entry
// in Batch.Invalid with where it is and why, and goes on. It fails only for
// input that is not that format at all. Settings keygate has no place for
// are reported as warnings. Readers never log or return a key value.
package importer

import (
	"encoding/hex"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/keygate/keygate/keys"
)

// Sources lists the formats Read knows.
var Sources = []string{"kong", "tyk", "unkey", "krakend", "csv"}

// MaxFile is the largest file a reader takes, in bytes.
const MaxFile = 8 << 20

// MaxEntries is the most users (or keys) one file may hold.
const MaxEntries = 10_000

// Options are what a reader needs besides the file.
type Options struct {
	// Tenant is the tenant the batch goes to.
	Tenant string
	// Expires is the expiry of keys the file gives none (keygate keys must
	// expire). Zero: such keys fail, and Result.MissingExpiry counts them.
	Expires time.Time
	// Window is the rate-limit window the users' requestLimit counts in
	// (the routes' window). Default: 2m.
	Window time.Duration
	// TykPlainKeys says the Tyk gateway ran with hash_keys false, so the
	// ids of its sessions are the keys themselves. Default: hashed (Tyk's
	// default).
	TykPlainKeys bool
	// Fingerprint turns a secret value (a key or a peer's hash of it) into
	// a stable id that does not reveal it, for entries the peer gives no id
	// of their own. Required.
	Fingerprint func(string) string
	// Now is the current time. Default: time.Now.
	Now time.Time
}

// Result is what a reader made of a file.
type Result struct {
	Batch keys.ImportBatch
	// Warnings name settings of the file that keygate did not take.
	Warnings []string
	// MissingExpiry counts keys that have no expiry, neither in the file
	// nor in Options.Expires.
	MissingExpiry int
}

// Read reads data as source.
func Read(source string, data []byte, opts Options) (Result, error) {
	if len(data) > MaxFile {
		return Result{}, fmt.Errorf("the file is larger than %d bytes", MaxFile)
	}
	if opts.Window <= 0 {
		opts.Window = 2 * time.Minute
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.Fingerprint == nil {
		return Result{}, fmt.Errorf("importer: no fingerprint function")
	}
	r := &reader{opts: opts, res: Result{Batch: keys.ImportBatch{Source: source, Tenant: opts.Tenant}}}
	var err error
	switch source {
	case "kong":
		err = r.kong(data)
	case "tyk":
		err = r.tyk(data)
	case "unkey":
		err = r.unkey(data)
	case "krakend":
		err = r.krakend(data)
	case "csv":
		err = r.csv(data)
	default:
		return Result{}, fmt.Errorf("unknown source %q (one of %s)", source, strings.Join(Sources, ", "))
	}
	if err != nil {
		return Result{}, err
	}
	if n := len(r.res.Batch.Users); n > MaxEntries {
		return Result{}, fmt.Errorf("the file has %d users; at most %d per import", n, MaxEntries)
	}
	for _, u := range r.res.Batch.Users {
		for _, k := range u.Keys {
			if k.ExpiresAt.IsZero() {
				r.res.MissingExpiry++
			}
		}
	}
	return r.res, nil
}

// reader accumulates one file's result.
type reader struct {
	opts Options
	res  Result
}

func (r *reader) warn(format string, args ...any) {
	if len(r.res.Warnings) < 1000 {
		r.res.Warnings = append(r.res.Warnings, fmt.Sprintf(format, args...))
	}
}

// invalid lists an entry the reader could not take.
func (r *reader) invalid(ref, kind, reason string) {
	r.res.Batch.Invalid = append(r.res.Batch.Invalid, keys.ImportItem{Ref: ref, Kind: kind, Action: keys.ImportFail, Reason: reason})
}

// expire sets k's expiry to t, or to the default expiry when t is zero.
func (r *reader) expire(k *keys.ImportKey, t time.Time) {
	k.ExpiresAt = t
	if t.IsZero() {
		k.ExpiresAt, k.ExpiresDefault = r.opts.Expires, true
	}
}

// limit maps n requests per period to keygate's window: exactly when the
// window is a whole number of periods (minute → 2m: ×2); not at all for
// periods longer than the window, which a per-window limit cannot express.
func (r *reader) limit(n float64, period time.Duration) (int64, bool) {
	if n <= 0 || period <= 0 || math.IsInf(n, 0) || math.IsNaN(n) {
		return 0, false
	}
	w := r.opts.Window
	if w%period != 0 {
		return 0, false
	}
	v := n * float64(w/period)
	if v > 1e9 || v != math.Trunc(v) {
		return 0, false
	}
	return int64(v), true
}

// strictest returns the smallest positive limit of ls, 0 when none.
func strictest(ls []int64) int64 {
	var out int64
	for _, l := range ls {
		if l > 0 && (out == 0 || l < out) {
			out = l
		}
	}
	return out
}

// decodeDigest reads a hash given as hex or base64 (standard or URL, with
// or without padding) and checks its size.
func decodeDigest(s string, size int) ([]byte, error) {
	s = strings.TrimSpace(s)
	if b, err := hex.DecodeString(s); err == nil && len(b) == size {
		return b, nil
	}
	for _, enc := range b64Encodings {
		if b, err := enc.DecodeString(s); err == nil && len(b) == size {
			return b, nil
		}
	}
	return nil, fmt.Errorf("not a %d-byte hash in hex or base64", size)
}

// cleanRoles keeps the entries that are valid customer roles and reports
// the others.
func (r *reader) cleanRoles(ref string, in []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range in {
		s = strings.TrimSpace(s)
		if s == "" || seen[s] {
			continue
		}
		if keys.ValidateID(s) != nil {
			r.warn("%s: role %q not imported: roles may contain only letters, digits and - _ . : @", ref, clip(s))
			continue
		}
		seen[s] = true
		out = append(out, s)
	}
	if len(out) > 50 {
		r.warn("%s: only the first 50 of %d roles imported", ref, len(out))
		out = out[:50]
	}
	return out
}

// cleanTags keeps valid tags and reports the others.
func (r *reader) cleanTags(ref string, in []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range in {
		if keys.ValidateTags("tags", []string{s}) != nil || seen[s] {
			if !seen[s] {
				r.warn("%s: tag %q not imported", ref, clip(s))
			}
			continue
		}
		seen[s] = true
		out = append(out, s)
	}
	if len(out) > keys.MaxTags {
		r.warn("%s: only the first %d of %d tags imported", ref, keys.MaxTags, len(out))
		out = out[:keys.MaxTags]
	}
	return out
}

// userName makes a valid user name from a peer's name.
func userName(s, fallback string) string {
	s = strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return -1
		}
		return r
	}, s))
	if s == "" {
		return fallback
	}
	for len(s) > 200 {
		_, n := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-n]
	}
	return s
}

// clip shortens text quoted in a warning.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
