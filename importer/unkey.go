package importer

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/keygate/keygate/keys"
)

var b64Encodings = []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding}

// unkeyKey is one key of Unkey's migration body: v1 migrations.createKeys
// (hash {value, variant}, ownerId, ratelimit, remaining) and v2
// keys.migrateKeys (hash string, externalId, ratelimits, credits).
type unkeyKey struct {
	Plaintext   string          `json:"plaintext"`
	Hash        json.RawMessage `json:"hash"`
	Prefix      string          `json:"prefix"`
	Name        string          `json:"name"`
	ExternalID  string          `json:"externalId"`
	OwnerID     string          `json:"ownerId"`
	Meta        json.RawMessage `json:"meta"`
	Roles       []string        `json:"roles"`
	Permissions []string        `json:"permissions"`
	Expires     *int64          `json:"expires"`
	Enabled     *bool           `json:"enabled"`
	Ratelimit   *struct {
		Limit          float64 `json:"limit"`
		Duration       float64 `json:"duration"`
		RefillRate     float64 `json:"refillRate"`
		RefillInterval float64 `json:"refillInterval"`
	} `json:"ratelimit"`
	Ratelimits []struct {
		Name     string  `json:"name"`
		Limit    float64 `json:"limit"`
		Duration float64 `json:"duration"`
	} `json:"ratelimits"`
	Remaining *int64          `json:"remaining"`
	Credits   json.RawMessage `json:"credits"`
}

// unkeyHash reads the hash member: {"value","variant":"sha256_base64"}
// (v1) or a string (v2: the SHA-256 in base64 or hex).
func unkeyHash(raw json.RawMessage) ([]byte, error) {
	raw = bytes.TrimSpace(raw)
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return decodeDigest(s, 32)
	}
	var o struct {
		Value   string `json:"value"`
		Variant string `json:"variant"`
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		return nil, fmt.Errorf("hash must be {\"value\", \"variant\"} or a string")
	}
	if o.Variant != "sha256_base64" {
		return nil, fmt.Errorf("hash variant %q is not supported (sha256_base64 is)", clip(o.Variant))
	}
	b, err := base64.StdEncoding.DecodeString(o.Value)
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("a sha256_base64 hash is 32 bytes in base64")
	}
	return b, nil
}

func (r *reader) unkey(data []byte) error {
	var list []json.RawMessage
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		if err := json.Unmarshal(trimmed, &list); err != nil {
			return fmt.Errorf("not an Unkey migration body: %w", err)
		}
	} else {
		var body struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if err := json.Unmarshal(trimmed, &body); err != nil || body.Keys == nil {
			return fmt.Errorf("not an Unkey migration body: expected an array of keys or {\"keys\": [...]}")
		}
		list = body.Keys
	}
	if len(list) > MaxEntries {
		return fmt.Errorf("the file has %d keys; at most %d per import", len(list), MaxEntries)
	}
	users := map[string]int{}
	for i, raw := range list {
		ref := fmt.Sprintf("keys[%d]", i)
		var uk unkeyKey
		if err := json.Unmarshal(raw, &uk); err != nil {
			r.invalid(ref, "key", "not an Unkey key object")
			continue
		}
		k := keys.ImportKey{Ref: ref}
		var secret string
		switch {
		case uk.Plaintext != "" && len(uk.Hash) > 0 && string(bytes.TrimSpace(uk.Hash)) != "null":
			r.invalid(ref, "key", "both plaintext and hash")
			continue
		case uk.Plaintext != "":
			k.Plaintext, secret = uk.Plaintext, uk.Plaintext
		case len(uk.Hash) > 0:
			sum, err := unkeyHash(uk.Hash)
			if err != nil {
				r.invalid(ref, "key", err.Error())
				continue
			}
			k.HashScheme, k.Hash, secret = keys.HashSHA256, sum, string(sum)
		default:
			r.invalid(ref, "key", "neither plaintext nor hash")
			continue
		}
		fp := r.opts.Fingerprint("unkey\x00" + secret)
		k.Name = userName(uk.Name, "unkey "+fp[:8])
		if uk.Expires != nil && *uk.Expires > 0 {
			k.ExpiresAt = time.UnixMilli(*uk.Expires)
		}
		r.expire(&k, k.ExpiresAt)
		if uk.Enabled != nil && !*uk.Enabled {
			k.Status = keys.KeyInactive
		}
		meta := map[string]any{}
		if m := bytes.TrimSpace(uk.Meta); len(m) > 0 && string(m) != "null" {
			if err := json.Unmarshal(m, &meta); err != nil {
				r.warn("%s: meta is not a JSON object: not imported", ref)
			}
		}
		if uk.Prefix != "" {
			meta["unkeyPrefix"] = uk.Prefix
		}
		if len(meta) > 0 {
			if b, _ := json.Marshal(meta); len(b) <= keys.MaxMeta {
				k.Meta = b
			} else {
				r.warn("%s: meta larger than %d bytes not imported", ref, keys.MaxMeta)
			}
		}
		if uk.Remaining != nil || (len(uk.Credits) > 0 && string(uk.Credits) != "null") {
			r.warn("%s: remaining credits not imported: keygate limits requests per window only", ref)
		}
		var ls []int64
		if rl := uk.Ratelimit; rl != nil {
			n, ms := rl.Limit, rl.Duration
			if ms == 0 && rl.RefillInterval > 0 {
				n, ms = rl.RefillRate, rl.RefillInterval
			}
			if l, ok := r.limit(n, time.Duration(ms)*time.Millisecond); ok {
				ls = append(ls, l)
			} else {
				r.warn("%s: ratelimit %v per %vms not imported: keygate limits per %s window", ref, n, ms, r.opts.Window)
			}
		}
		for j, rl := range uk.Ratelimits {
			if l, ok := r.limit(rl.Limit, time.Duration(rl.Duration)*time.Millisecond); ok {
				ls = append(ls, l)
			} else {
				r.warn("%s.ratelimits[%d] (%s): %v per %vms not imported: keygate limits per %s window", ref, j, clip(rl.Name), rl.Limit, rl.Duration, r.opts.Window)
			}
		}
		owner := uk.ExternalID
		if owner == "" {
			owner = uk.OwnerID
		}
		roles := r.cleanRoles(ref+".roles", uk.Roles)
		perms := r.cleanACEs(ref+".permissions", uk.Permissions)
		limit := strictest(ls)
		if owner != "" {
			if ui, ok := users[owner]; ok {
				u := &r.res.Batch.Users[ui]
				u.Keys = append(u.Keys, k)
				u.User.CustomerRoles = union(u.User.CustomerRoles, roles)
				u.User.AccessControlEntities = union(u.User.AccessControlEntities, perms)
				u.User.RequestLimit = strictest([]int64{u.User.RequestLimit, limit})
				continue
			}
		}
		u := keys.ImportUser{Ref: ref, ExternalID: "key:" + fp}
		u.User.Name = k.Name
		if owner != "" {
			u.ExternalID, u.User.Name = owner, userName(owner, k.Name)
			users[owner] = len(r.res.Batch.Users)
		}
		u.User.CustomerRoles, u.User.AccessControlEntities, u.User.RequestLimit = roles, perms, limit
		u.Keys = []keys.ImportKey{k}
		r.res.Batch.Users = append(r.res.Batch.Users, u)
	}
	return nil
}

// cleanACEs keeps the entries that are valid access control entities.
func (r *reader) cleanACEs(ref string, in []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range in {
		if s == "" || len(s) > 200 || seen[s] || bytes.ContainsFunc([]byte(s), func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			continue
		}
		seen[s] = true
		out = append(out, s)
	}
	if len(out) > 200 {
		r.warn("%s: only the first 200 of %d entries imported", ref, len(out))
		out = out[:200]
	}
	return out
}

// union appends the entries of b missing from a.
func union(a, b []string) []string {
	for _, s := range b {
		found := false
		for _, t := range a {
			if s == t {
				found = true
				break
			}
		}
		if !found {
			a = append(a, s)
		}
	}
	return a
}
